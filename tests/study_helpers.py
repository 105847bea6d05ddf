"""Shared helpers for the study tests: output folders built cheaply, a simulated rater over the JSON API."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from clipstyle_opt.imageio import save_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def method_dirs(root: Path, methods: tuple[str, ...] = ("adain", "ours", "baseline"),
                photos: tuple[str, ...] = ("chelsea", "coffee"), prompts: tuple[str, ...] = ("fire",)) -> list[Path]:
    """One folder per method, each with an output per photo and prompt (48x32 px tints of the photo, with
    the sidecar a stylize run writes: prompt, content, method). Returns the folders."""
    (root / "photos").mkdir(parents=True, exist_ok=True)
    for name in photos:
        with Image.open(EXAMPLES / f"{name}.png") as photo:
            photo.convert("RGB").resize((48, 32)).save(root / "photos" / f"{name}.png")
    folders = []
    for m, method in enumerate(methods):
        folder = root / method
        for p, name in enumerate(photos):
            for q, prompt in enumerate(prompts):
                image = Image.open(root / "photos" / f"{name}.png").convert("RGB")
                image = Image.eval(image, lambda v, s=(m * 37 + p * 11 + q * 5) % 97: min(255, v + s))
                save_image(image, folder / f"{name}_{q}.png",
                           {"tool": "clipstyle_opt", "prompt": prompt, "content": str(root / "photos" / f"{name}.png"),
                            "method": method})
        folders.append(folder)
    return folders


def answer_for(screen: dict[str, Any], bias: int = 0) -> dict[str, int]:
    """What a careful simulated rater answers: the same screen content always gets the same answers, a
    control (the photo shown as the result, or beside an output) gets its obvious answer."""
    urls = [image["url"] for image in screen["images"]]
    keys = [q["key"] for q in screen["questions"]]
    if screen["questions"][0]["type"] == "scale":
        if urls[0] == urls[1]:
            return {"style": 1, "content": 5}
        digest = hashlib.sha256(urls[1].encode()).digest()
        return {k: 1 + (digest[i] + bias) % 5 for i, k in enumerate(keys)}
    photo, left, right = urls
    if photo in (left, right):  # control: the output matches the text, the photo keeps the photo
        return {"style": 2 if photo == left else 1, "content": 1 if photo == left else 2}
    digest = hashlib.sha256("".join(sorted((left, right))).encode()).digest()
    first = left if left < right else right  # a choice tied to the content, not to the side shown
    return {k: (1 if (digest[i] % 2 == 0) == (first == left) else 2) for i, k in enumerate(keys)}


def rate_all(client: Any, name: str, participant: Optional[str] = None, repeat_each: bool = True,
             limit: Optional[int] = None) -> tuple[str, list[dict[str, Any]]]:
    """Join ``name`` and answer screens until done (or ``limit``); each submit is sent twice when
    ``repeat_each`` (a retried request). Returns the rater token and the submitted {item, answers, screen}."""
    body = {"participant": participant} if participant else {}
    response = client.post(f"/api/studies/{name}/raters", json=body)
    assert response.status_code == 200, response.text
    token = response.json()["rater"]
    return token, continue_rating(client, name, token, repeat_each, limit)


def continue_rating(client: Any, name: str, token: str, repeat_each: bool = True,
                    limit: Optional[int] = None) -> list[dict[str, Any]]:
    submitted = []
    while limit is None or len(submitted) < limit:
        screen = client.get(f"/api/studies/{name}/next", params={"rater": token}).json()
        if screen.get("done"):
            break
        answers = answer_for(screen)
        for _ in range(2 if repeat_each else 1):
            response = client.post(f"/api/studies/{name}/ratings",
                                   json={"rater": token, "item": screen["item"], "answers": answers})
            assert response.status_code == 200, response.text
        submitted.append({"item": screen["item"], "answers": answers, "screen": screen})
    return submitted
