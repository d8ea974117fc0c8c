"""Shared test configuration: the hypothesis profile every property test runs under.

JIT compilation makes a first call take seconds, so deadlines are off. The "ci" profile
(default) keeps example counts modest so the whole suite stays well under 15 minutes on
2 cores; set HYPOTHESIS_PROFILE=thorough for a longer local search.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, max_examples=25, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "thorough", deadline=None, max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    return f"hypothesis profile: {settings._current_profile} (deadline={settings().deadline})"
