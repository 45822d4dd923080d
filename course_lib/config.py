"""Course profiles: fast defaults for every learner and CI, a full profile for GPUs.

Each lesson has one parameters cell:

    S = settings(fast=dict(epochs=3, source="bundled"),
                 full=dict(epochs=20, source="full"))

``COURSE_PROFILE=full jupyter lab`` switches every lesson to the full
datasets and longer training; CI runs the defaults, exactly what a learner
runs on a laptop CPU.
"""

from __future__ import annotations

import os

PROFILES = ("fast", "full")


def profile():
    """The active profile name: ``$COURSE_PROFILE``, ``"fast"`` when unset."""
    name = os.environ.get("COURSE_PROFILE", "fast").strip().lower() or "fast"
    if name not in PROFILES:
        raise ValueError(f"COURSE_PROFILE={name!r}: expected one of {', '.join(PROFILES)}.")
    return name


def settings(fast, full):
    """The settings dict of the active profile (``full`` overrides ``fast`` key by key)."""
    chosen = dict(fast)
    if profile() == "full":
        chosen.update(full)
    chosen["profile"] = profile()
    return chosen
