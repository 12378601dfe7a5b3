"""Unowned behaviour changes: ownership registry, change ledger, version watch, change points.

Pure: values in (``BehaviourSample``, ``LedgerEntry``, the registry mapping), findings out.
"""

from detectors.ownership.changepoint import MeanShiftCusum, RateShiftCusum
from detectors.ownership.components import UnownedComponentTracker
from detectors.ownership.config import OwnershipSettings
from detectors.ownership.detector import UnownedChangeDetector
from detectors.ownership.ledger import ChangeLedger, LedgerEntry
from detectors.ownership.mixes import CentroidShift, MixShift
from detectors.ownership.registry import Owner, OwnershipRegistry
from detectors.ownership.samples import BehaviourSample, looks_like_refusal
from detectors.ownership.versions import VersionWatcher

__all__ = [
    "BehaviourSample",
    "CentroidShift",
    "ChangeLedger",
    "LedgerEntry",
    "MeanShiftCusum",
    "MixShift",
    "Owner",
    "OwnershipRegistry",
    "OwnershipSettings",
    "RateShiftCusum",
    "UnownedChangeDetector",
    "UnownedComponentTracker",
    "VersionWatcher",
    "looks_like_refusal",
]
