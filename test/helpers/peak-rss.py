#!/usr/bin/env python3
"""Runs a command and appends its peak resident set size to a log, as one JSON line.

usage: peak-rss.py LOG BINARY [ARGS...]

The figure is the kernel's own: getrusage(RUSAGE_CHILDREN).ru_maxrss after waiting for the child,
i.e. the high-water mark of the child's resident memory (VmHWM), however briefly it was reached.
Standard streams are inherited and the exit status is passed on, so the caller sees the command itself.
"""
import json
import os
import resource
import signal
import subprocess
import sys

log, binary, args = sys.argv[1], sys.argv[2], sys.argv[3:]
child = subprocess.Popen([binary, *args])
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda number, _frame: child.send_signal(number))
code = child.wait()
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(log, 'a', encoding='utf-8') as out:
    out.write(json.dumps({'binary': os.path.basename(binary), 'args': args, 'exit': code, 'peakRssKb': peak_kb}) + '\n')
sys.exit(code if code >= 0 else 128 - code)
