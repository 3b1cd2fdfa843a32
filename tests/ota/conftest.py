"""Test set-up for the OTA image toolkit."""

from __future__ import annotations

import types

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # looptime 0.9's pytest plugin looks up pytest-asyncio's plugin on every fixture set-up and
    # crashes with AttributeError when pytest-asyncio is not installed, which breaks every test
    # that uses a fixture or parametrize. An empty stand-in makes it conclude "no event loop
    # fixture here", which is true without pytest-asyncio. Remove this once the project installs
    # pytest-asyncio or passes `-p no:looptime`; it does nothing when pytest-asyncio is present.
    if config.pluginmanager.getplugin("asyncio") is None:
        config.pluginmanager.register(types.ModuleType("no_pytest_asyncio"), "asyncio")
