"""A suite the Control tests run on a standing server: it holds its devices
for ``seconds``, doing real work on each (measured compute phases)."""
import asyncio
import time
from dataclasses import dataclass

from edgebed.proto.contracts import runtime as rt
from edgebed.results import measured
from edgebed.server.experiment import RunContext


@dataclass(frozen=True)
class Options:
    seconds: float = 30.0


async def experiment(ctx: RunContext, options: Options) -> None:
    ctx.say(f"working on {', '.join(ctx.devices)} for {options.seconds} s")
    deadline, rounds = time.monotonic() + options.seconds, 0
    while time.monotonic() < deadline:
        await asyncio.gather(*(ctx.server.call(d, rt.COMPUTE, rt.ComputeIns(
            run_id=ctx.run_id, n=96, iterations=20, round=rounds), 60) for d in ctx.devices))
        rounds += 1
        ctx.progress(options.seconds - (deadline - time.monotonic()), options.seconds, "working")
    ctx.writer.summary({"rounds": measured(rounds)})
