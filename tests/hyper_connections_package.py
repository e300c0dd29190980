"""The static hyper-connections formula written compactly, and a network run through the
`hyper-connections` package (PyPI, lucidrains) instead of the formula's mixing: the reference
that the stream tests compare against."""

from __future__ import annotations

import hyper_connections


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
