"""Seeds for the differential fuzz targets: revision files and alembic.ini files made of the
constructs Python and ConfigParser treat in ways easy to get wrong (escapes and prefixes,
implicit concatenation, tuples without parentheses, names bound in blocks, imports, annotations,
line breaks of every kind; continuation lines, comments, duplicates, %-interpolation).
tests/fuzz/seed-corpus.sh writes a fixed number of each (seeded, so the corpus stays the same):

    python3 tests/fuzz/alembic_seeds.py OUT_DIR COUNT
"""
import os
import random
import sys

KEYS = ["revision", "down_revision", "branch_labels", "depends_on"]
NAMES = KEYS + ["REV", "A", "B", "x", "sa", "op", "cli"]
PIECES = ["a", "1", "f", "\\n", "\\\\", "\\x41", "\\u00e9", "\\101", "\\'", '\\"', " ", "é", "\\t", "\\q",
          "\\\n", "\\U0001F600", "\\777"]


class Revisions:
    def __init__(self, rnd):
        self.rnd = rnd

    def string(self, pre=None):
        rnd = self.rnd
        q = rnd.choice(["'", '"', "'" * 3, '"' * 3])
        if pre is None:
            pre = rnd.choice(["", "", "", "", "r", "u", "R", "U"] + (["b", "f", "rb"] if rnd.random() < 0.1 else []))
        body = "".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 5)))
        if "b" in pre.lower():
            body = body.replace("é", "e").replace("\\u00e9", "").replace("\\U0001F600", "")
        if len(q) == 1:
            body = body.replace("\n", "")
        if body.endswith("\\") and not body.endswith("\\\\"):
            body += "x"
        return pre + q + body + q

    def atom(self, d=0):
        rnd = self.rnd
        r = rnd.random()
        if r < 0.35:
            pre = rnd.choice(["", "r", "u", "R"])
            return " ".join(self.string(rnd.choice([pre, ""])) for _ in range(rnd.randint(1, 3)))
        if r < 0.45:
            return "None"
        if r < 0.55:
            return rnd.choice(NAMES)
        if r < 0.6:
            return rnd.choice(["1", "-1", "1.5", "1+2j", "0x1f", "True", "...", "set()", "1e-5", "--1", "1 + 2",
                               "-1j", "1_000"])
        if d > 2:
            return self.string()
        if r < 0.75:
            return "(" + self.items(d) + ")"
        if r < 0.85:
            return "[" + self.items(d) + "]"
        if r < 0.9:
            return "{" + self.items(d) + "}"
        if r < 0.93:
            return "{" + self.string() + ": " + self.atom(d + 1) + "}"
        return rnd.choice(["cli.EXPAND", "f()", "x[0]", "'a' + 'b'", "a if b else c", "lambda: 1", "(y := 'z')",
                           "not x", "-x", "{**a}", "f'{x}'", "x.y", "b'a'", "-REV"])

    def items(self, d):
        rnd = self.rnd
        k = rnd.randint(0, 3)
        sep = rnd.choice([", ", ",\n    ", " ,", ",  # c\n"])
        t = sep.join(self.atom(d + 1) for _ in range(k))
        return t + ("," if k and rnd.random() < 0.3 else "")

    def value(self):
        k = self.rnd.random()
        if k < 0.2:
            return self.atom() + ", " + self.atom()
        return self.atom() + ("," if k < 0.25 else "")

    def statement(self):
        rnd, v = self.rnd, self.value
        k = rnd.choice(NAMES)
        forms = [
            (0.5, lambda: f"{k} = {v()}"),
            (0.6, lambda: f"{k}: Union[str, Sequence[str], None] = {v()}"),
            (0.65, lambda: f"{k} = {rnd.choice(NAMES)} = {v()}"),
            (0.68, lambda: f"{k} += {v()}"),
            (0.71, lambda: rnd.choice(["import os", "import sqlalchemy as sa", "from alembic import op",
                                       f"from m import {k}", f"from m import (a as {k}, b)", f"import a.{k}"])),
            (0.74, lambda: f"del {k}"),
            (0.77, lambda: f"{k}: str"),
            (0.8, lambda: f"{k}, x = {v()}"),
            (0.83, lambda: f"x.{k} = {v()}"),
            (0.86, lambda: f"if x:\n    {k} = {v()}"),
            (0.88, lambda: f"def {k}():\n    {rnd.choice(KEYS)} = {v()}\n    return 1"),
            (0.9, lambda: f"class C:\n    {k} = {v()}"),
            (0.92, lambda: '"""doc\n' + f"{k} = {v()}" + '\n"""'),
            (0.94, lambda: f"{k} = {v()}; {rnd.choice(KEYS)} = {v()}"),
            (0.96, lambda: f"{k} = {v()}  # {k} = 'c'"),
            (0.98, lambda: f"{k} = \\\n    {v()}"),
            (1.0, lambda: f"try:\n    {k} = {v()}\nexcept E:\n    pass"),
        ]
        r = rnd.random()
        return next(f for p, f in forms if r < p)()

    def file(self):
        rnd = self.rnd
        lines = [self.statement() for _ in range(rnd.randint(1, 7))]
        if rnd.random() < 0.7:
            lines += [f"revision = {self.string()}", "down_revision = None"]
            rnd.shuffle(lines)
        nl = rnd.choice(["\n", "\n", "\r\n", "\r"])
        return nl.join(line.replace("\n", nl) for line in lines) + nl


INI_KEYS = ["script_location", "version_locations", "path_separator", "version_path_separator",
            "recursive_version_locations", "sourceless", "prepend_sys_path", "here", "base", "Script_Location", "x"]
INI_PIECES = ["a", "/abs", "%(here)s", "%(base)s", "%(x)s", "%%", "%", "%(nope)s", "%(script_location)s", " ", "os",
              ":", ";", "true", "#c", ";c", "%(Base)s", "%()s", "%(a", "=", ":"]


def ini_file(rnd):
    def value():
        return "".join(rnd.choice(INI_PIECES) for _ in range(rnd.randint(0, 4)))

    def line():
        r = rnd.random()
        if r < 0.15:
            return "[" + rnd.choice(["alembic", "DEFAULT", "loggers", " alembic", "post_write_hooks"]) + "]" + \
                rnd.choice(["", "", " ; c", "]x"])
        if r < 0.2:
            return rnd.choice(["", " ", "# c", "; c", "   # indented comment"])
        if r < 0.3:
            return rnd.choice(["  ", "\t", "    "]) + value()
        if r < 0.33:
            return rnd.choice(["garbage line", "=x", ":y", "[]"])
        return rnd.choice(["", "", " "]) + rnd.choice(INI_KEYS) + rnd.choice([" = ", "=", ": ", " :"]) + value()

    lines = ["[alembic]"] + [line() for _ in range(rnd.randint(1, 10))]
    if rnd.random() < 0.2:
        rnd.shuffle(lines)
    nl = rnd.choice(["\n", "\n", "\r\n", "\r"])
    return nl.join(lines) + rnd.choice([nl, ""])


def main():
    out, count = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(20261201)
    revs = Revisions(rnd)
    for target, make in (("alembic_revision", revs.file), ("alembic_ini", lambda: ini_file(rnd))):
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for i in range(count):
            with open(os.path.join(out, target, f"gen-{i:03d}"), "w", newline="") as f:
                f.write(make())


if __name__ == "__main__":
    main()
