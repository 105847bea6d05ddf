"""The micro-model kit: what made the small CLIP and SigLIP bundled in ``tests/data``, and checks them.

A plain package at the repository root, for the tests and for people who
retrain or probe the micro models; it is not shipped in the wheel (setup.cfg
packages ``clipstyle_opt*`` only). Run its scripts from the repository root,
either as modules (``python -m microclip.train_micro_clip --help``) or as
files (``python microclip/train_micro_clip.py --help``).

Data (numpy, no model needed):
  `microclip.textures`  -- colour x pattern texture images and photo-like clutter
  `microclip.captions`  -- their captions, and which caption describes which image
  `microclip.batches`   -- labelled batches for training and held-out checks
Models:
  `microclip.scoring`   -- feed images and captions to a micro model; zero-shot accuracy
  `microclip.train_micro_clip`    -- the trainer (``--family clip`` or ``siglip``): options, loop, saving
  `microclip.training_data`       -- its seeded batch stream and augmentation
  `microclip.contrastive`         -- its losses and the adversarial part of each batch
  `microclip.micro_siglip`        -- the micro SigLIP's config, tokenizer, loss, folder, and what
                                     ``--family siglip`` changes in the loop (`SiglipFamily`)
  `microclip.sweep_micro_recipes` -- several training recipes side by side
Checks of the stylization itself (no CLIP in the measurement):
  `microclip.patterns`      -- orientation coherence: did the output get stripes?
  `microclip.pattern_check` -- stylize photos with a micro model and measure that

microclip/README holds the bundled models' records: the commands that made
them, their held-out accuracy, and the trials that led to the recipes.
"""
