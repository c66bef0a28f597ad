#!/usr/bin/env python3
"""CPU seconds per process and thread, each second, from /proc: run beside `npm run bench` to see where the CPU goes.

Usage: python3 bench/cpu-sampler.py OUT.jsonl   (stop it with Ctrl-C or kill)

Each line: {"t": unix time, "idle": idle CPU seconds of the machine, "cpu": {"<process>[<role>]/<thread>": seconds}}.
Node processes are told apart by WORKER_ROLES (extract, detect) or else their command line. A process that exits
within a second is missed (its time goes to its parent only when waited for, which is not counted), and kernel
threads are left out: they rename themselves as they work, which breaks the differences.
"""
import json
import os
import sys
import time

HZ = os.sysconf('SC_CLK_TCK')


def role_of(pid: str) -> str:
    try:
        for entry in open(f'/proc/{pid}/environ', 'rb').read().split(b'\0'):
            if entry.startswith(b'WORKER_ROLES='):
                return entry[13:].decode()
        argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\0')
        return b' '.join(argv[1:3]).decode(errors='replace')[-40:]
    except OSError:
        return ''


def snapshot() -> tuple[dict[str, float], float]:
    seconds: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            comm = open(f'/proc/{pid}/comm').read().strip()
            if open(f'/proc/{pid}/cmdline', 'rb').read() == b'':
                continue  # a kernel thread
            role = role_of(pid) if comm in ('node', 'MainThread') else ''
            for tid in os.listdir(f'/proc/{pid}/task'):
                stat = open(f'/proc/{pid}/task/{tid}/stat').read()
                end = stat.rfind(')')
                thread = stat[stat.find('(') + 1:end]
                fields = stat[end + 2:].split()
                key = f'{comm}[{role}]/{thread}'
                seconds[key] = seconds.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / HZ
        except OSError:
            continue  # gone meanwhile
    idle = int(open('/proc/stat').readline().split()[4]) / HZ
    return seconds, idle


def main() -> None:
    out = open(sys.argv[1], 'w')
    before, idle_before = snapshot()
    while True:
        time.sleep(1)
        now, idle = snapshot()
        used = {key: round(value - before.get(key, 0.0), 2) for key, value in now.items() if value - before.get(key, 0.0) > 0.005}
        out.write(json.dumps({'t': round(time.time(), 1), 'idle': round(idle - idle_before, 2), 'cpu': used}) + '\n')
        out.flush()
        before, idle_before = now, idle


if __name__ == '__main__':
    main()
