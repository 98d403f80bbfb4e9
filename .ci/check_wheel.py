"""The wheel holds py.typed, the reference models and the pages' templates, and no tests,
benchmarks or training scripts: ``python .ci/check_wheel.py WHEEL``."""

import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
required = [
    "captum_gmar/py.typed",
    "captum_gmar/reference/model/model.safetensors",
    "captum_gmar/reference/model/config.json",
    "captum_gmar/reference/samples.npz",
    "captum_gmar/reference/dinov2_small/head.safetensors",
    "captum_gmar/reference/dinov2_small_backbone/config.json",
    "captum_gmar/pages/templates/pages.css",
    "captum_gmar/pages/templates/explanation.js",
]
missing = [name for name in required if name not in names]
# the reference models' training and maintenance scripts live in tools/, outside the package
strays = [
    name
    for name in names
    if name.split("/")[0] in ("tests", "benchmarks", "tools")
    or "/tests/" in name
    or "/benchmarks/" in name
    or name.startswith("captum_gmar/reference/train")
]
if missing or strays:
    sys.exit(f"wheel {sys.argv[1]}: missing {missing}, stray {strays}")
print(f"wheel: {len(names)} files, py.typed, the reference models and the pages' templates in, no tests/ or benchmarks/")
