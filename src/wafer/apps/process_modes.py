"""Illustrative process-mode reading of each WM-811K class (shown by the demo; the same text,
with more context, is docs/process_modes.md, and a test keeps the two in step).

This is engineering reasoning about which process steps *can* produce a spatial signature, not
a verified root cause: a pattern is compatible with many causes, the model only recognises the
pattern, and finding the cause needs the wafer's process history (tools, chambers, lot), inline
inspection and failure analysis. On the synthetic data set there is no process at all.
"""

from __future__ import annotations

from wafer.core.classes import CLASS_NAMES

CAVEAT = (
    "Illustrative engineering reasoning, not a verified root cause: the classifier recognises a "
    "spatial pattern, and many process steps can produce the same pattern."
)

PROCESS_MODES: dict[str, dict[str, object]] = {
    "Center": {
        "signature": "Failing dies clustered around the wafer centre, pass dies towards the edge.",
        "causes": [
            "spin-coat / develop centre defects (resist or developer puddling, dispense-nozzle "
            "drips, centre thickness build-up)",
            "CMP centre-fast or centre-slow removal (carrier or membrane pressure profile)",
            "centre-peaked deposition or etch rate (showerhead gas distribution, plasma density)",
            "centre-hot thermal profile on a bake plate, chuck or RTP lamp array",
        ],
    },
    "Donut": {
        "signature": "A ring of failing dies at mid-radius; the centre and the outer edge pass.",
        "causes": [
            "radial non-uniformity with a mid-radius extremum: CMP pressure-zone boundaries, "
            "plasma coil or showerhead ring structure",
            "boundary between heater zones of a bake plate or electrostatic chuck",
            "spin-coat striations or film-thickness ripple at one radius",
        ],
    },
    "Edge-Loc": {
        "signature": "A localised cluster of failing dies at one sector of the wafer edge.",
        "causes": [
            "handling contact at one edge position (robot end effector, edge grip, clamp ring, "
            "cassette slot)",
            "edge-bead removal misaligned or off-centre, so one side is over- or under-cleared",
            "local defocus at the edge from wafer bow, tilt or a particle under the chuck edge",
            "notch/flat-related effects and contamination at one edge location",
        ],
    },
    "Edge-Ring": {
        "signature": "Failing dies all around the wafer periphery, a ring at the outermost dies.",
        "causes": [
            "edge-bead removal (EBR) width or centring",
            "CMP edge effects (edge roll-off, over- or under-polish at the retaining ring)",
            "etch or deposition edge non-uniformity (plasma sheath bending, worn focus ring)",
            "edge exposure, edge focus and thermal gradients at the edge during RTP or bake",
        ],
    },
    "Loc": {
        "signature": "A localised cluster of failing dies inside the wafer, away from the edge.",
        "causes": [
            "a local particle, residue or contamination spot (e.g. a resist bubble or splash)",
            "a backside particle on the chuck causing a local focus or temperature hot spot",
            "a local handling or tool-contact event inside the wafer area",
        ],
    },
    "Near-full": {
        "signature": "Almost every die on the wafer fails.",
        "causes": [
            "a test-side problem first: probe-card issues (damaged or worn needles, planarity, "
            "contact resistance), a wrong test program or tester calibration; retest before "
            "blaming the process",
            "a gross process excursion: wrong recipe, skipped or repeated step, misprocessed wafer",
            "whole-wafer contamination or a chamber failure during processing",
        ],
    },
    "Random": {
        "signature": "Failing dies scattered over the wafer with no spatial structure.",
        "causes": [
            "particle showers (chamber wall flaking, pump-down turbulence, a dirty wet bench)",
            "a raised random defect density across many steps (environment, chemicals)",
            "intermittent electrical test noise",
        ],
    },
    "Scratch": {
        "signature": "A thin linear or arc-shaped track of failing dies.",
        "causes": [
            "handling scratches (robot end effector, tweezers, wafer sliding in a cassette)",
            "CMP scratches (slurry agglomerates, pad debris, conditioner-disk diamonds)",
            "a particle dragged across the wafer during a contact step",
        ],
    },
    "none": {
        "signature": "No systematic spatial pattern: at most a few failing dies.",
        "causes": [
            "baseline random yield loss; no process mode is indicated by the map",
        ],
    },
}

assert tuple(PROCESS_MODES) == CLASS_NAMES


def interpretation_markdown(cls: str) -> str:
    """Markdown: the class's spatial signature and plausible causes, with the caveat."""
    mode = PROCESS_MODES[cls]
    causes = "\n".join(f"- {c}" for c in mode["causes"])
    return (
        f"**{cls}: spatial signature.** {mode['signature']}\n\n"
        f"**Plausible process causes** (illustrative):\n\n{causes}\n\n"
        f"*{CAVEAT} See docs/process_modes.md.*"
    )
