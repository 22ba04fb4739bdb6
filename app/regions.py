"""Named region presets offered in the sidebar, as ``(W, S, E, N)`` boxes.

``W > E`` crosses the antimeridian (the convention of `pipelines.Query.bbox`).
"""

from __future__ import annotations

__all__ = ["CUSTOM_BOX", "POINT", "REGION_PRESETS", "preset_for_bbox"]

REGION_PRESETS: dict[str, tuple[float, float, float, float]] = {
    "Global": (-180.0, -90.0, 180.0, 90.0),
    "Tropics": (-180.0, -23.5, 180.0, 23.5),
    "Niño 3.4": (-170.0, -5.0, -120.0, 5.0),
    "Niño 3": (-150.0, -5.0, -90.0, 5.0),
    "North Atlantic": (-80.0, 0.0, -10.0, 60.0),
    "North Pacific": (120.0, 20.0, -100.0, 60.0),
    "Tropical Pacific": (120.0, -20.0, -70.0, 20.0),
    "Southern Ocean": (-180.0, -70.0, 180.0, -40.0),
    "Arctic": (-180.0, 66.5, 180.0, 90.0),
    "Bering Sea": (160.0, 50.0, -155.0, 66.0),
}

#: Region choices that are not presets: a box drawn on the map, a clicked point.
CUSTOM_BOX = "Custom box"
POINT = "Point"


def preset_for_bbox(bbox: tuple[float, float, float, float] | None) -> str | None:
    """The preset name whose box equals ``bbox`` (to 1e-6 degrees), if any."""
    if bbox is None:
        return None
    for name, box in REGION_PRESETS.items():
        if all(abs(a - b) < 1e-6 for a, b in zip(box, bbox, strict=True)):
            return name
    return None
