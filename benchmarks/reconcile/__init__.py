"""The reconciler's benchmark, one job per module (run it as ``benchmarks/bench_reconcile.py``).

* :mod:`.world`: the book of N positions (its mix, built deterministically) and its seeding;
* :mod:`.stands`: the emulator, the simulator and the sink, and the reconciler's environment;
* :mod:`.network`: the delay proxy, :class:`~.network.Rtt` and where the stand-ins are reached;
* :mod:`.phases`: :class:`~.phases.PhaseTimer`, time per collaborator call;
* :mod:`.runs`: one run of ours, of ours in a child process (peak RSS), of naive, of the floor;
* :mod:`.measure`: the repetitions of one N, and the latency run;
* :mod:`.tables`, :mod:`.targets`, :mod:`.report`, :mod:`.plot`: what is printed and written;
* :mod:`.cli`: the command line (``python -m benchmarks.reconcile`` runs it too).
"""
