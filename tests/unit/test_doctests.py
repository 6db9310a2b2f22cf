"""The runnable examples in the modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["identity.attribution", "detection.detector", "sampling.controller", "text",
                                  "service.systemd", "bpf.preflight"])
def test_docstring_examples(name):
    module = importlib.import_module(f"oomguard.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
