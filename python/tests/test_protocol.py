"""The PyTorch side accepts and rejects exactly the same protocol vectors as the TypeScript side."""
import json
import os

import pytest

from conftest import ROOT, VECTORS
from srlora_torch.protocol import validate, validate_command


def load(kind):
    d = os.path.join(VECTORS, "protocol", kind)
    return [(f, json.load(open(os.path.join(d, f)))) for f in sorted(os.listdir(d))]


@pytest.mark.parametrize("name,msg", load("valid"))
def test_valid(name, msg):
    assert validate(msg) is None


@pytest.mark.parametrize("name,msg", load("invalid"))
def test_invalid(name, msg):
    assert validate(msg)


def test_the_packaged_schema_is_the_generated_one():
    a = open(os.path.join(ROOT, "docs", "protocol.schema.json")).read()
    b = open(os.path.join(ROOT, "python", "srlora_torch", "protocol.schema.json")).read()
    assert a == b


def test_command_errors_name_the_field():
    assert "fusionRatio" in validate_command({"kind": "set", "fusionRatio": 2})
    assert validate_command({"kind": "explode"}).startswith("/kind")
    assert validate_command({"kind": "recompose", "layers": ["a"]}) is None
