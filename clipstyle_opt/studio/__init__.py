"""The web studio behind ``clipstyle serve``: a Gradio page and API over the same engine as the command line.

Modules, one job each: `security` (upload bounds, which models a page may name), `controls` (the Advanced
settings built from `clipstyle_opt.config.settings`), `jobs` (runs per browser session, previews, stop and
continue), `service` (`Studio`: starting and saving a session's run), `masks` (painted or uploaded masks and
regions, as ``--mask`` and ``--region`` take them), `videos` (a U-Net applied to an uploaded video), `gallery`
(results saved in ``--output-dir`` and read back), `blend` (the strength slider), `widgets` (errors, checked
inputs, the mask editor), `stylize_tab` and `apply_tab` (the two tabs), `api` (the named endpoints), `app` (the
page), `server` (launching it). Only the tabs, `widgets`, `api`, `app`, `controls` and `server` import gradio;
the engine knows nothing of any of them. Needs the ``studio`` extra
(``pip install 'clipstyle_opt[studio]'``).
"""

DEFAULT_PREVIEW_EVERY = 2.0
"""Seconds of training between two previews, at most (``clipstyle serve --preview-every``)."""
DEFAULT_MAX_UPLOAD_MB = 50
"""Largest upload the studio accepts, in MB (``clipstyle serve --max-upload-mb``)."""
