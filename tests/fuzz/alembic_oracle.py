"""What Python makes of an Alembic revision file and of an alembic.ini: the oracle of the
differential fuzz targets (fuzz_alembic_revision, fuzz_alembic_ini) and of tests/unit.

Started once by a target, it reads requests from stdin and answers each with one JSON line:

    R <length>\\n<bytes>   a revision file: {"ok": true, "id", "down", "labels", "depends"}
                          ("labels": "unknown" when branch_labels is not a literal), or
                          {"ok": false}; {"skip": true} when Python itself would not say
                          (a syntax error, a coding cookie, bindings the text cannot show)
    I <length>\\n<bytes>   an alembic.ini: {"ok": true, "values": {key: value or null}} as
                          ConfigParser (Alembic's options, here = /p) gives the [alembic] keys
                          below, {"ok": false} when reading it fails, or per key {"error": ...}

Values are what ast.literal_eval gives for the file's top-level assignments, with names bound
earlier to literals put in; Alembic's own normalization follows (None, "" and () are none).
Nothing is executed.
"""
import ast
import configparser
import copy
import io
import json
import re
import sys

KEYS = ("revision", "down_revision", "branch_labels", "depends_on")
INI_KEYS = ("script_location", "version_locations", "path_separator", "version_path_separator",
            "recursive_version_locations", "sourceless", "prepend_sys_path")
CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
UNKNOWN = object()


class Opaque(Exception):
    """The text does not say: Python would decide at run time."""


def names_in(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def evaluate(node, env):
    """ast.literal_eval of node with the known names put in; UNKNOWN when it refuses."""
    for n in ast.walk(node):
        if isinstance(n, (ast.UnaryOp, ast.BinOp)) and names_in(n):
            raise Opaque("arithmetic on a name")

    class Put(ast.NodeTransformer):
        def visit_Name(self, n):
            v = env.get(n.id, UNKNOWN)
            return n if v is UNKNOWN else ast.copy_location(ast.Constant(value=v), n)

    try:
        return ast.literal_eval(Put().visit(copy.deepcopy(node)))
    except (RecursionError, MemoryError):
        raise
    except Exception:
        return UNKNOWN


def bind_target(target, value, env):
    if isinstance(target, ast.Name):
        env[target.id] = value
    else:
        for name in names_in(target):
            env[name] = UNKNOWN


def walrus_names(stmt):
    """Names bound by := outside def and class bodies (theirs bind locals)."""
    skip = set()
    for n in ast.walk(stmt):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skip.update(id(x) for b in n.body for x in ast.walk(b))
    return {n.target.id for n in ast.walk(stmt) if isinstance(n, ast.NamedExpr) and id(n) not in skip}


def relevant_names(tree):
    """The keys and every name a top-level value reads: a block that touches one is opaque."""
    names = set(KEYS)
    for st in tree.body:
        if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
            names |= names_in(st.value)
    return names


def statement(st, env, relevant):
    for name in walrus_names(st):
        env[name] = UNKNOWN
    if isinstance(st, ast.Assign):
        value = evaluate(st.value, env)
        for t in st.targets:
            bind_target(t, value, env)
    elif isinstance(st, ast.AnnAssign):
        if st.value is not None:
            bind_target(st.target, evaluate(st.value, env), env)
    elif isinstance(st, ast.AugAssign):
        bind_target(st.target, UNKNOWN, env)
    elif isinstance(st, (ast.Import, ast.ImportFrom)):
        for a in st.names:
            if a.name == "*":
                raise Opaque("a star import")
            env[a.asname or a.name.split(".")[0]] = UNKNOWN
    elif isinstance(st, ast.Delete):
        for t in st.targets:
            if isinstance(t, ast.Name):
                env.pop(t.id, None)
            else:
                bind_target(t, UNKNOWN, env)
    elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        env[st.name] = UNKNOWN
    elif isinstance(st, (ast.Expr, ast.Pass, ast.Global, ast.Nonlocal, ast.Assert, ast.Raise, ast.Return,
                         ast.Break, ast.Continue)):
        pass
    elif names_in(st) & relevant or any(isinstance(n, ast.Global) for n in ast.walk(st)):
        raise Opaque("a block that binds or reads a name that matters")
    else:
        for name in {n.id for n in ast.walk(st) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}:
            env[name] = UNKNOWN


def strings(v):
    return isinstance(v, (tuple, list)) and all(isinstance(x, str) for x in v)


def clean(v):
    """Values C strings can hold (no NUL, no lone surrogate)."""
    for s in [v] if isinstance(v, str) else list(v) if strings(v) else []:
        if "\0" in s or any(0xD800 <= ord(c) <= 0xDFFF for c in s):
            raise Opaque("a value C cannot hold")


def as_list(key, v):
    if v is UNKNOWN:
        return "unknown" if key == "branch_labels" else None
    clean(v)
    if v is None or (isinstance(v, str) and v == "" and key != "branch_labels"):
        return []
    if isinstance(v, str):
        return [v]
    if strings(v):
        if key == "depends_on" and list(v) == [""]:
            return []
        return list(v)
    return None


def revision(data):
    if b"\0" in data or b"\\N{" in data or any(CODING.match(line) for line in data.splitlines()[:2]):
        return {"skip": True}
    try:
        text = data.decode("utf-8")
        tree = ast.parse(text)
        compile(tree, "x.py", "exec")
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError, OverflowError):
        return {"skip": True}
    env, relevant = {}, relevant_names(tree)
    try:
        for n in ast.walk(tree):
            if isinstance(n, (ast.Global, ast.Nonlocal)) and set(n.names) & relevant:
                raise Opaque("a global statement")
        for st in tree.body:
            statement(st, env, relevant)
        present = {k: env[k] for k in KEYS if k in env}
        rev = present.get("revision", UNKNOWN)
        if rev is not UNKNOWN:
            clean(rev)
    except Opaque:
        return {"skip": True}
    if "revision" not in present or not isinstance(rev, str) or "down_revision" not in present:
        return {"ok": False}
    out = {"ok": True, "id": rev}
    for key, name in (("down_revision", "down"), ("branch_labels", "labels"), ("depends_on", "depends")):
        try:
            out[name] = as_list(key, present.get(key))
        except Opaque:
            return {"skip": True}
        if out[name] is None:
            return {"ok": False}
    return out


def ini(data):
    try:
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None).read()
    except UnicodeDecodeError:
        return {"skip": True}
    if not text.isascii():
        return {"skip": True}  # Unicode white space and case: ours are ASCII's
    parser = configparser.ConfigParser({"here": "/p"})
    try:
        parser.read_string(text)
    except configparser.Error:
        return {"ok": False}
    values = {}
    for key in INI_KEYS:
        if not parser.has_section("alembic"):
            return {"ok": True, "section": False}
        if not parser.has_option("alembic", key):
            values[key] = None
            continue
        if too_long(parser, key):
            values[key] = {"error": "too long"}
            continue
        try:
            values[key] = parser.get("alembic", key)
        except configparser.Error as e:
            values[key] = {"error": type(e).__name__}
    return {"ok": True, "section": True, "values": values}


KEYCRE = re.compile(r"%\(([^)]+)\)s")


def too_long(parser, key, size_limit=65536, refs_limit=100000):
    """Whether expanding key passes our bounds (ours refuses it; Python could take forever):
    the bytes it grows to and the references it follows, counted as ConfigParser expands."""
    raw = dict(parser.items("alembic", raw=True))
    memo = {}

    def walk(v, depth):
        if depth > 10:
            return 0, 0
        if v in memo:
            return memo[v]
        size = refs = i = 0
        while i < len(v):
            p = v.find("%", i)
            if p < 0:
                size += len(v) - i
                break
            size += p - i
            m = KEYCRE.match(v, p)
            if v[p + 1:p + 2] == "%":
                size, i = size + 1, p + 2
            elif m and m.group(1).lower() in raw:
                ref, i, refs = raw[m.group(1).lower()], m.end(), refs + 1
                s2, r2 = walk(ref, depth + 1) if "%" in ref else (len(ref), 0)
                size, refs = size + s2, refs + r2
            else:
                break
        memo[v] = (size, refs)
        return memo[v]

    size, refs = walk(raw[key], 1)
    return size >= size_limit or refs > refs_limit


def main():
    inp, out = sys.stdin.buffer, sys.stdout
    while True:
        header = inp.readline()
        if not header:
            return
        kind, length = header.split()
        data = inp.read(int(length))
        try:
            answer = revision(data) if kind == b"R" else ini(data)
        except (RecursionError, MemoryError):
            answer = {"skip": True}  # too deep for Python itself: it would not say either
        out.write(json.dumps(answer, sort_keys=True) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
