"""The reference implementations of AttnLRP, CP-LRP and the gamma rule: ``lxt``'s and
``zennit``'s own rule files, loaded alone.

``import lxt.efficient`` fails on transformers 5 and ``import zennit`` needs torchvision,
so their packages are not imported: the files that hold the rules (``lxt/efficient/rules.py``
and ``patches.py``, ``zennit/core.py``, ``types.py`` and ``rules.py``) are loaded as modules of empty
stand-in packages. They are found in the folder named by ``$LRP_REFERENCE_PATH``, where
``pip install --no-deps --target "$LRP_REFERENCE_PATH" lxt==2.1 zennit==0.5.1`` put them
(``.ci/run`` does), or, failing that, among the installed packages. A folder of their own
keeps them off ``sys.path``: Quantus imports zennit when it is installed, and that import
needs torchvision.
Nothing here is patched globally: the reference applies ``lxt``'s functions to one
model's modules for one pass and undoes it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import torch


def load_files(package: str, files: list[str]) -> dict[str, types.ModuleType]:
    """Load ``files`` (dotted names below ``package``) from the installed package's folder,
    in order, without importing the package; skip if it is not installed."""
    root = _package_folder(package)
    saved = {name: sys.modules.get(name) for name in sys.modules if name == package or name.startswith(package + ".")}
    loaded = {}
    try:
        for dotted in [package, *{".".join([package, *f.split(".")[:i]]) for f in files for i in range(1, f.count(".") + 1)}]:
            stand_in = types.ModuleType(dotted)
            stand_in.__path__ = [str(root.joinpath(*dotted.split(".")[1:]))]
            sys.modules[dotted] = stand_in
        for name in files:
            full = f"{package}.{name}"
            file_spec = importlib.util.spec_from_file_location(full, root.joinpath(*name.split(".")).with_suffix(".py"))
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[full] = module
            file_spec.loader.exec_module(module)
            loaded[name] = module
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        sys.modules.update({k: v for k, v in saved.items() if v is not None})
    return loaded


def _package_folder(package: str) -> Path:
    folder = os.environ.get("LRP_REFERENCE_PATH")
    if folder and (Path(folder) / package / "__init__.py").is_file():
        return Path(folder) / package
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(
            f"{package} is not found: set LRP_REFERENCE_PATH to a folder made by "
            "pip install --no-deps --target FOLDER lxt==2.1 zennit==0.5.1"
        )
    return Path(spec.origin).parent


def lxt_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """``lxt.efficient.rules`` and ``lxt.efficient.patches``."""
    loaded = load_files("lxt", ["efficient.rules", "efficient.patches"])
    return loaded["efficient.rules"], loaded["efficient.patches"]


def zennit_rules() -> types.ModuleType:
    return load_files("zennit", ["types", "core", "rules"])["rules"]


@contextmanager
def lxt_rules_on_vit(model: torch.nn.Module, variant: str):
    """``lxt``'s AttnLRP (``"attnlrp"``) or CP-LRP (``"cplrp"``) on a transformers ViT with
    eager attention, for the duration of the block: its ``layer_norm_forward`` on every
    LayerNorm, ``identity_rule_implicit`` on the GELUs, and its attention wrapper around
    ViT's ``eager_attention_forward``."""
    from transformers.models.vit import modeling_vit

    rules, patches = lxt_modules()
    wrap = patches.wrap_attention_forward if variant == "attnlrp" else patches.cp_wrap_attention_forward
    with ExitStack() as stack:
        original_attention = modeling_vit.eager_attention_forward
        modeling_vit.eager_attention_forward = wrap(original_attention)
        stack.callback(setattr, modeling_vit, "eager_attention_forward", original_attention)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.forward = types.MethodType(patches.layer_norm_forward, module)
                stack.callback(delattr, module, "forward")
            elif type(module).__module__ == "transformers.activations":
                original = module.forward
                module.forward = lambda x, original=original: rules.identity_rule_implicit(original, x)
                stack.callback(delattr, module, "forward")
        yield


def lxt_relevance(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, variant: str) -> torch.Tensor:
    """``pixel_values * gradient`` under ``lxt``'s rules: ``(B, C, H, W)``."""
    x = x.detach().clone().requires_grad_(True)
    with lxt_rules_on_vit(model, variant):
        logits = model(pixel_values=x).logits
    logits.gather(1, targets.view(-1, 1)).sum().backward()
    return (x * x.grad).detach()
