"""The default progress display: one line on stderr per stage, redrawn in place."""
import sys


class ProgressBar:
    def __init__(self, width=30, stream=None):
        self.width = width
        self.stream = stream or sys.stderr

    def __call__(self, stage, done, total, item):
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {stage} {done}/{total} {item[:40]:<40}")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()
        return True
