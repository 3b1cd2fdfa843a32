"""Test set-up for the testbed model and loader."""

from __future__ import annotations

import types

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Same stand-in as tests/ota/conftest.py, so these tests also run on their own: looptime 0.9's
    # plugin crashes on any fixture or parametrize when pytest-asyncio is not installed. Does
    # nothing when pytest-asyncio (or another conftest's stand-in) is already registered.
    if config.pluginmanager.getplugin("asyncio") is None:
        config.pluginmanager.register(types.ModuleType("no_pytest_asyncio"), "asyncio")
