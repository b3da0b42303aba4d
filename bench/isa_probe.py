"""Does a kernel-ISA profile make CPU training bit-identical across x86 machines?

python -m bench.isa_probe [--profile portable|native] [--steps 60] [--batch 64]

The training of ``../shared/tools/isa_probe.py`` (a small CNN, Adam, seeded random data),
run under one of ``tasks/core/isa.py``'s profiles exactly as a pinned stage runs: in a
process started with the profile's environment, its torch backends switched off, and the
fused Adam the pipeline's optimisers use. Prints the profile, torch's kernel capability,
the CPU and a hash of the weights: the same hash on two CPU families means the profile
holds there. Under ``qemu-x86_64 -cpu Haswell`` (Debian's qemu-user) it emulates an Intel
CPU on an AMD one; shrink ``--steps`` and ``--batch`` there (about 70 s per step at 64).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys

from tasks.core import isa


def train(steps: int, batch: int) -> str:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64 * 12 * 12, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="portable", choices=sorted(isa.PROFILES))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    if not isa.in_effect(a.profile):  # the pins must be in the environment before torch loads
        env = isa.environment(a.profile)
        return subprocess.call([sys.executable, "-m", "bench.isa_probe", *sys.argv[1:]], env=env)
    isa.configure_torch(a.profile)
    digest = train(a.steps, a.batch)
    info = isa.effective(a.profile)
    print(f"{a.profile} {info['torch_cpu_capability']} {digest} ({a.steps} steps, batch {a.batch}; {info['cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
