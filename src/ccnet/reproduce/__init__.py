"""Reproducing the CCNet paper's claims on a CPU: ``ccnet demo``, ``ccnet demo --video``, ``ccnet bench``.

- :mod:`~ccnet.reproduce.demo` -- the recurrence ablation on the built-in context task (settings, training
  runs, summary and the paper's ordering checks); :mod:`~ccnet.reproduce.demo_report` writes its section.
- :mod:`~ccnet.reproduce.video_demo` -- temporal context with 3-D criss-cross attention on the video task.
- :mod:`~ccnet.reproduce.bench` -- the efficiency report (FLOPs / memory vs non-local, scaling, throughput);
  :mod:`~ccnet.reproduce.bench_report` writes its section and the scaling plot.
- :mod:`~ccnet.reproduce.figures` -- prediction panels and the paper's attention figure.
- :mod:`~ccnet.reproduce.context_task` -- axis distance and object accuracy on the context task.
- :mod:`~ccnet.reproduce.runs` / :mod:`~ccnet.reproduce.verdicts` -- one-thread training runs in worker
  processes; whether one variant beats another over seeds.
- :mod:`~ccnet.reproduce.report` -- the environment and ``report.md`` assembly shared by all three.
"""
