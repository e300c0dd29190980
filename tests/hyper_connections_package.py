"""The static hyper-connections formula written compactly, and a network run through the
`hyper-connections` package (PyPI, lucidrains) instead of the formula's mixing: the reference
that the stream tests compare against."""

from __future__ import annotations

import hyper_connections
import torch


def compact_hyper_connections(streams: int) -> str:
    """Static hyper-connections with ``streams`` streams in the compact form, summed at the end."""
    return f"""stream h[{streams}]
param res_n[{streams},{streams}] = identity
param pre_n[{streams}] = onehot(0)
param post_n[{streams}] = 1
h_0 = x_0
h_<n+1> = res_n @ h_n + post_n*F(pre_n @ h_n)
x_<n+1> = sum(h_<n+1>)
"""


def package_stream_sum(net, modules, x, streams: int):
    """The sum of the streams when the package's ``modules`` (one per step) mix the streams
    around the blocks of ``net.layer1``; ``net``'s stem makes the input."""
    expand, reduce = hyper_connections.get_expand_reduce_stream_functions(streams)
    residuals = expand(net.stem(x))
    for hc, step in zip(modules, net.layer1):
        branch_input, add_residual = hc(residuals)
        residuals = add_residual(step.F(branch_input))
    return reduce(residuals)


def one_stage_steps(net):
    """The steps of a one-stage network (``layer1`` on mlp, ``layers`` on the transformers)."""
    return net.layer1 if hasattr(net, "layer1") else net.layers


def zero_dynamic_maps(net) -> None:
    """Set every step's input-dependent maps (H_res, H_pre, H_post) to 0: the static network."""
    with torch.no_grad():
        for step in one_stage_steps(net):
            for name in ("res_map", "pre_map", "post_map"):
                getattr(step, name).zero_()


def randomise_coefficients(step, generator: torch.Generator) -> None:
    """Normal random static parts, projections and gains of one dynamic step (its scales are
    left to the caller: each package scales its maps its own way)."""
    with torch.no_grad():
        for name in ("res", "pre", "post", "h_norm_gain", "res_map", "pre_map", "post_map"):
            parameter = getattr(step, name)
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
