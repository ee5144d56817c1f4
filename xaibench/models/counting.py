"""Counted model passes: how many images went through the model's forward and backward, so every
plug-in's cost is reported in passes per image (run.json), not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PassCounter:
    """Images that went through the model's forward and backward (to the logits), counted."""

    forward_images: int = 0
    backward_images: int = 0
    forward_calls: int = 0
    backward_calls: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(
            forward_images=self.forward_images,
            backward_images=self.backward_images,
            forward_calls=self.forward_calls,
            backward_calls=self.backward_calls,
        )

    def since(self, before: dict[str, int]) -> dict[str, int]:
        now = self.snapshot()
        return {k: now[k] - before[k] for k in now}
