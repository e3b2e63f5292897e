"""Accuracy checks: is the 4-bit error acceptable, and which format to use?

    metrics(reference, approx)                -> dict of error measures, any arrays
    compare_weights(model_or_state_dict, ...) -> Report: the quantization error of every
                                                 Linear weight under each format (no data)
    compare_outputs(reference, patched, x)    -> Report: per-module output error (forward
                                                 hooks) and the final output error

A Report prints as a plain-text table, renders as an HTML table in Jupyter, converts to a
pandas DataFrame (.to_pandas(), pandas optional) and plots SQNR per layer and format
(.plot(), matplotlib optional).
"""

from __future__ import annotations

import fnmatch
import html
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

METRICS = ("rel_err", "cosine", "sqnr_db", "max_abs")


def _to_f64(a: Any) -> np.ndarray:
    """float64 numpy copy of a torch / numpy / cupy / jax array (any device)."""
    module = type(a).__module__.split(".")[0]
    if module == "torch":
        return a.detach().float().cpu().double().numpy()
    if module == "cupy":
        return a.get().astype(np.float64)
    return np.asarray(a, dtype=np.float64)


def metrics(reference: Any, approx: Any) -> dict:
    """Error of `approx` against `reference` (same shape, any float arrays):
    rel_err = ||approx - ref|| / ||ref|| (Frobenius), cosine similarity, SQNR in dB
    (10 log10 ||ref||^2 / ||approx - ref||^2; inf when equal) and the max absolute error."""
    ref, app = _to_f64(reference).ravel(), _to_f64(approx).ravel()
    if ref.shape != app.shape:
        raise ValueError(f"approx: shape {_to_f64(approx).shape} differs from the reference's {_to_f64(reference).shape}")
    if not (np.isfinite(ref).all() and np.isfinite(app).all()):
        raise ValueError("reference/approx: contain NaN or Inf")
    diff = app - ref
    ref_sq, diff_sq = float(ref @ ref), float(diff @ diff)
    norms = math.sqrt(ref_sq) * math.sqrt(float(app @ app))
    return {
        "rel_err": math.sqrt(diff_sq / ref_sq) if ref_sq > 0 else (0.0 if diff_sq == 0 else math.inf),
        "cosine": float(ref @ app) / norms if norms > 0 else (1.0 if diff_sq == 0 else 0.0),
        "sqnr_db": 10 * math.log10(ref_sq / diff_sq) if diff_sq > 0 else math.inf,
        "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
    }


@dataclass
class Report:
    """Rows of {name, format, shape, rel_err, cosine, sqnr_db, max_abs, note}."""

    title: str
    rows: list = field(default_factory=list)

    def _cells(self, row: dict) -> list:
        if row.get("note"):
            return [row["name"], row.get("format", ""), str(row.get("shape", "")), row["note"], "", "", ""]
        return [row["name"], row.get("format", ""), str(row.get("shape", "")), f"{row['rel_err']:.4f}",
                f"{row['cosine']:.5f}", f"{row['sqnr_db']:.2f}", f"{row['max_abs']:.3g}"]

    HEADER = ["name", "format", "shape", "rel err", "cosine", "SQNR dB", "max abs"]

    def __str__(self) -> str:
        table = [self.HEADER] + [self._cells(r) for r in self.rows]
        widths = [max(len(str(line[i])) for line in table) for i in range(len(self.HEADER))]
        lines = [self.title] + ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
        return "\n".join(lines)

    __repr__ = __str__  # the table, also as Jupyter's text/plain

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in self._cells(r)) + "</tr>"
                       for r in self.rows)
        return f"<p><b>{html.escape(self.title)}</b></p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self):
        """A pandas DataFrame of the rows (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("Report.to_pandas needs pandas (pip install pandas)") from err
        return pd.DataFrame(self.rows)

    def summary(self) -> dict:
        """{format: mean SQNR over the measured rows}: which format keeps the most signal."""
        out: dict[str, list] = {}
        for r in self.rows:
            if not r.get("note") and math.isfinite(r["sqnr_db"]):
                out.setdefault(r.get("format", ""), []).append(r["sqnr_db"])
        return {k: float(np.mean(v)) for k, v in out.items()}

    def plot(self, ax=None):
        """SQNR (dB) per layer, one line per format (needs matplotlib). Returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("Report.plot needs matplotlib (pip install matplotlib)") from err
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.5))
        names = list(dict.fromkeys(r["name"] for r in self.rows))
        for fmt in dict.fromkeys(r.get("format", "") for r in self.rows):
            values = {r["name"]: r["sqnr_db"] for r in self.rows if r.get("format", "") == fmt and not r.get("note")}
            ax.plot(range(len(names)), [values.get(n, np.nan) for n in names], marker="o", label=fmt or "output")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=7)
        ax.set_ylabel("SQNR (dB)")
        ax.set_title(self.title)
        ax.legend()
        return ax


# ---- weights -------------------------------------------------------------------------------

def _quantizer(spec: str):
    """'nvfp4', 'mxfp4', 'int4-g128', 'int4-g64-asym', 'int4-channel' -> (fn, block)."""
    from . import pack_int4, quantize_mxfp4, quantize_nvfp4

    if spec == "nvfp4":
        return quantize_nvfp4, 16
    if spec == "mxfp4":
        return quantize_mxfp4, 32
    parts = spec.split("-")
    if parts[0] == "int4" and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "asym"):
        symmetric = len(parts) == 2
        if parts[1] == "channel":
            return (lambda w: pack_int4(w, -1, symmetric=symmetric)), 2
        if parts[1] in ("g32", "g64", "g128"):
            group = int(parts[1][1:])
            return (lambda w: pack_int4(w, group, symmetric=symmetric)), group
    raise ValueError(f"formats: unknown format {spec!r} (nvfp4, mxfp4, int4-g32/g64/g128/channel[-asym])")


def _progress(items: Sequence, enabled: Optional[bool], desc: str) -> Iterable:
    if enabled is False or (enabled is None and len(items) < 50):
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc)


def _linear_weights(model_or_state_dict: Any, include: Optional[Sequence[str]]):
    """(name, 2-D weight) pairs: the nn.Linear weights of a module, or the 2-D float
    tensors named *.weight of a state dict / mapping."""
    if isinstance(model_or_state_dict, Mapping):
        items = [(k[: -len(".weight")], v) for k, v in model_or_state_dict.items()
                 if k.endswith(".weight") and len(getattr(v, "shape", ())) == 2]
    else:
        import torch

        if not isinstance(model_or_state_dict, torch.nn.Module):
            raise TypeError(f"model_or_state_dict: expected a torch module or a mapping of tensors, "
                            f"got {type(model_or_state_dict).__name__}")
        items = [(n, m.weight) for n, m in model_or_state_dict.named_modules() if isinstance(m, torch.nn.Linear)]
    if include is not None:
        items = [(n, w) for n, w in items if any(fnmatch.fnmatch(n, p) for p in include)]
    return items


def weight_rows(name: str, weight: Any, formats: Sequence[str]) -> list:
    """Report rows of one weight under each format (used by compare_weights and the CLI)."""
    rows = []
    w = weight.detach() if hasattr(weight, "detach") else weight
    shape = tuple(int(d) for d in w.shape)
    for spec in formats:
        quantize, block = _quantizer(spec)
        row = {"name": name, "format": spec, "shape": shape}
        if shape[1] % block:
            row["note"] = f"skipped: K = {shape[1]} is not a multiple of {block}"
        else:
            row.update(metrics(w, quantize(w).dequantize()))
        rows.append(row)
    return rows


def compare_weights(model_or_state_dict: Any, formats: Sequence[str] = ("nvfp4", "mxfp4", "int4-g128"),
                    include: Optional[Sequence[str]] = None, progress: Optional[bool] = None) -> Report:
    """The quantization error of every Linear weight under each format (no data needed).

    Args:
        model_or_state_dict: a torch module (its nn.Linear weights) or a mapping of tensors
            (2-D tensors named *.weight).
        formats: "nvfp4", "mxfp4", "int4-g32/g64/g128/channel", "-asym" for zero points;
            one name or a sequence of them.
        include: fnmatch patterns on layer names.
        progress: a tqdm bar (default: when there are 50+ weights and tqdm is installed).
    """
    if isinstance(formats, str):
        formats = (formats,)
    for spec in formats:
        _quantizer(spec)  # reject unknown formats before any work
    report = Report("weight quantization error")
    items = _linear_weights(model_or_state_dict, include)
    for name, weight in _progress(items, progress, "weights"):
        report.rows.extend(weight_rows(name, weight, formats))
    return report


# ---- outputs --------------------------------------------------------------------------------

def compare_outputs(reference_model: Any, patched_model: Any, inputs: Any, names: Optional[Sequence[str]] = None) -> Report:
    """Per-module output error of `patched_model` against `reference_model` on `inputs`
    (a tensor, a tuple of positional arguments or a dict of keyword arguments), collected
    with forward hooks on the modules both models share by name (default: every MLP
    block and the Linears that kept their names), plus a final "output" row."""
    import torch

    def call(model):
        if isinstance(inputs, Mapping):
            return model(**inputs)
        if isinstance(inputs, tuple):
            return model(*inputs)
        return model(inputs)

    def first_tensor(out):
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            return out[0]
        for attr in ("last_hidden_state", "logits"):
            if isinstance(getattr(out, attr, None), torch.Tensor):
                return getattr(out, attr)
        return None

    for label, model in (("reference_model", reference_model), ("patched_model", patched_model)):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{label}: expected a torch.nn.Module, got {type(model).__name__}")
    ref_modules = dict(reference_model.named_modules())
    patched_modules = dict(patched_model.named_modules())
    if names is None:
        names = [n for n in ref_modules if n and n in patched_modules
                 and (n.endswith("mlp") or isinstance(ref_modules[n], torch.nn.Linear))]
    elif isinstance(names, str):
        names = [names]
    missing = [n for n in names if n not in ref_modules or n not in patched_modules]
    if missing:
        raise ValueError(f"names: {missing} are not modules of both models")
    captured: dict[str, dict] = {"ref": {}, "patched": {}}
    handles = []
    for side, modules in (("ref", ref_modules), ("patched", patched_modules)):
        for n in names:
            handles.append(modules[n].register_forward_hook(
                lambda mod, args, out, n=n, side=side: captured[side].__setitem__(n, first_tensor(out))))
    try:
        with torch.no_grad():
            final_ref, final_patched = first_tensor(call(reference_model)), first_tensor(call(patched_model))
    finally:
        for h in handles:
            h.remove()
    report = Report("output error against the reference model")
    for n in names:
        a, b = captured["ref"].get(n), captured["patched"].get(n)
        if a is not None and b is not None and a.shape == b.shape:
            report.rows.append({"name": n, "format": "", "shape": tuple(a.shape), **metrics(a, b)})
    if final_ref is not None and final_patched is not None:
        report.rows.append({"name": "output", "format": "", "shape": tuple(final_ref.shape),
                            **metrics(final_ref, final_patched)})
    return report
