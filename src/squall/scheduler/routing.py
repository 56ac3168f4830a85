"""Weighted alias routing (Lambda's ``RoutingConfig.AdditionalVersionWeights``), pure: the random draw is an input.

An alias points at a primary version and optionally at additional versions with weights in [0, 1] summing to at
most 1; the primary gets the rest.  ``pick_version(routing, primary, r)`` with ``r`` uniform in [0, 1) therefore
routes each additional version ``weight`` of the traffic.
"""

from __future__ import annotations

from collections.abc import Mapping

from squall.core.errors import InvalidParameterValue

__all__ = ["pick_version", "validate_routing"]


def validate_routing(routing: Mapping[str, float], primary_version: str) -> None:
    """Refuse routing configs Lambda refuses (weights outside [0, 1], sum over 1, primary listed again)."""
    for version, weight in routing.items():
        if not 0.0 <= weight <= 1.0:
            raise InvalidParameterValue(
                f"Invalid weight {weight} for version {version}: weights must be between 0.0 and 1.0"
            )
        if version == primary_version:
            raise InvalidParameterValue(
                f"Version {version} is the alias's primary version; it cannot also have a routing weight"
            )
    if sum(routing.values()) > 1.0:
        raise InvalidParameterValue("The sum of additional version weights must not exceed 1.0")


def pick_version(routing: Mapping[str, float], primary_version: str, r: float) -> str:
    """The version that serves a request whose random draw is ``r`` in [0, 1).

    Additional versions take consecutive slices of [0, 1) in sorted version order (so the result is stable for a
    given config), the primary takes what is left.
    """
    if not 0.0 <= r < 1.0:
        raise ValueError(f"r must be in [0, 1), got {r}")
    edge = 0.0
    for version in sorted(routing):
        edge += routing[version]
        if r < edge:
            return version
    return primary_version
