"""The SunSpec information models edgepair reads: point offsets, types and scale factors.

Pure data (no I/O), from the SunSpec Alliance's model definitions (sunspec/models,
``json/model_<id>.json``; the same offsets as the older SMDX files ``smdx_00<id>.xml``).
An offset counts from the model's first body register, i.e. two after its ID/L header.
Only the models and points edgepair uses are here; a device's other models are skipped by
their length while the chain is walked.

- 1 common (Mn, Md, SN: who the device is),
- 103 three-phase inverter (integer + scale factor), 113 the same in float32,
- 124 basic storage controls,
- 201-204 meters (integer + scale factor; one layout for all four).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The two registers at the base address: "SunS" in ASCII.
MARKER = (0x5375, 0x6E53)
END_ID = 0xFFFF
# Values a device uses for "not implemented".
NOT_IMPLEMENTED = {"int16": 0x8000, "uint16": 0xFFFF, "sunssf": 0x8000, "enum16": 0xFFFF,
                   "bitfield16": 0xFFFF}
COMMON = 1


@dataclass(frozen=True, slots=True)
class Point:
    offset: int
    type: str  # uint16 | int16 | enum16 | bitfield16 | sunssf | float32 | acc32 | string
    sf: str = ""  # the scale factor point's name ("" for none)
    words: int = 1


@dataclass(frozen=True, slots=True)
class Model:
    id: int
    name: str
    lengths: tuple[int, ...]  # the L values a conforming device announces
    points: Mapping[str, Point]


def _int_points(names: str, start: int = 0, **sf: str) -> dict[str, Point]:
    """Consecutive one-register points; ``NAME_SF`` ones are scale factors."""
    out = {}
    for i, name in enumerate(names.split()):
        kind = "sunssf" if name.endswith("_SF") else "uint16"
        out[name] = Point(start + i, kind, sf.get(name, ""))
    return out


def _typed(points: dict[str, Point], kind: str, *names: str) -> dict[str, Point]:
    for name in names:
        p = points[name]
        points[name] = Point(p.offset, kind, p.sf, p.words)
    return points


_COMMON = Model(1, "common", (65, 66), {
    "Mn": Point(0, "string", words=16), "Md": Point(16, "string", words=16),
    "Opt": Point(32, "string", words=8), "Vr": Point(40, "string", words=8),
    "SN": Point(48, "string", words=16), "DA": Point(64, "uint16")})

# 103: A, AphA-C, A_SF, PPVphAB-CA, PhVphA-C, V_SF, W, W_SF, Hz, Hz_SF, VA, VA_SF, VAr,
# VAr_SF, PF, PF_SF, WH (acc32), WH_SF, DCA, DCA_SF, DCV, DCV_SF, DCW, DCW_SF, … St, StVnd.
_INV_103 = _typed({
    **_int_points("A AphA AphB AphC A_SF PPVphAB PPVphBC PPVphCA PhVphA PhVphB PhVphC V_SF "
                  "W W_SF Hz Hz_SF VA VA_SF VAr VAr_SF PF PF_SF",
                  A="A_SF", AphA="A_SF", AphB="A_SF", AphC="A_SF", PhVphA="V_SF",
                  PhVphB="V_SF", PhVphC="V_SF", W="W_SF", Hz="Hz_SF", VA="VA_SF",
                  VAr="VAr_SF", PF="PF_SF"),
    "WH": Point(22, "acc32", "WH_SF", 2),
    **_int_points("WH_SF DCA DCA_SF DCV DCV_SF DCW DCW_SF", 24, DCA="DCA_SF", DCV="DCV_SF",
                  DCW="DCW_SF"),
    "St": Point(37, "enum16")}, "int16", "W", "VA", "VAr", "PF", "DCW")
INVERTER_103 = Model(103, "three-phase inverter", (50,), _INV_103)

_FLOATS_113 = "A AphA AphB AphC PPVphAB PPVphBC PPVphCA PhVphA PhVphB PhVphC W Hz VA VAr PF " \
    "WH DCA DCV DCW TmpCab TmpSnk TmpTrns TmpOt"
INVERTER_113 = Model(113, "three-phase inverter (float)", (60,), {
    **{name: Point(2 * i, "float32", words=2) for i, name in enumerate(_FLOATS_113.split())},
    "St": Point(46, "enum16")})

_STORAGE = _int_points(
    "WChaMax WChaGra WDisChaGra StorCtl_Mod VAChaMax MinRsvPct ChaState StorAval InBatV ChaSt "
    "OutWRte InWRte InOutWRte_WinTms InOutWRte_RvrtTms InOutWRte_RmpTms ChaGriSet "
    "WChaMax_SF WChaDisChaGra_SF VAChaMax_SF MinRsvPct_SF ChaState_SF StorAval_SF InBatV_SF "
    "InOutWRte_SF",
    WChaMax="WChaMax_SF", WChaGra="WChaDisChaGra_SF", WDisChaGra="WChaDisChaGra_SF",
    VAChaMax="VAChaMax_SF", MinRsvPct="MinRsvPct_SF", ChaState="ChaState_SF",
    StorAval="StorAval_SF", InBatV="InBatV_SF", OutWRte="InOutWRte_SF", InWRte="InOutWRte_SF")
_typed(_STORAGE, "int16", "OutWRte", "InWRte")  # -100…100 % of WChaMax: < 0 reverses
_typed(_STORAGE, "bitfield16", "StorCtl_Mod")  # bit 0 CHARGE, bit 1 DISCHARGE: limits active
_typed(_STORAGE, "enum16", "ChaSt", "ChaGriSet")  # ChaGriSet 0 PV, 1 GRID
STORAGE_124 = Model(124, "basic storage controls", (24,), _STORAGE)

# 201-204 (single, split, wye, delta): one layout. A, AphA-C, A_SF, PhV, PhVphA-C, PPV,
# PPVphAB-CA, V_SF, Hz, Hz_SF, W, WphA-C, W_SF, … (W: + import, - export).
_METER = _typed(_int_points(
    "A AphA AphB AphC A_SF PhV PhVphA PhVphB PhVphC PPV PPVphAB PPVphBC PPVphCA V_SF Hz Hz_SF "
    "W WphA WphB WphC W_SF",
    A="A_SF", AphA="A_SF", AphB="A_SF", AphC="A_SF", Hz="Hz_SF", W="W_SF", WphA="W_SF",
    WphB="W_SF", WphC="W_SF"), "int16", "A", "AphA", "AphB", "AphC", "W", "WphA", "WphB", "WphC")
METERS = {i: Model(i, f"meter ({kind})", (105,), _METER)
          for i, kind in ((201, "single phase"), (202, "split phase"), (203, "wye"),
                          (204, "delta"))}

MODELS: Mapping[int, Model] = {m.id: m for m in (_COMMON, INVERTER_103, INVERTER_113,
                                                 STORAGE_124, *METERS.values())}


def describe(model_id: int) -> str:
    model = MODELS.get(model_id)
    return f"{model_id} ({model.name})" if model else str(model_id)
