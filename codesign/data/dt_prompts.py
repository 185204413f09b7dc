"""DecodingTrust's prompt material, read out of its source code into JSON files.

DecodingTrust keeps its task messages, jailbreak prompts, demonstrations, answer keywords and run
settings in Python literals and YAML configs, not in its data sets. :func:`build_prompt_files`
reads them from the pinned fork (:mod:`codesign.data.repo`) and writes the files of the
``decodingtrust/prompts/`` layout (``machine_ethics.json``, ``advglue.json``, ``ood.json``,
``fairness.json``, ``chat_protocol.json``) under the same keys, each section with a ``source``
naming the file and lines (``owner/repo@commit:path:a-b``).

Values are exact: Python's ``ast`` parses each file and a small evaluator reads literals (strings,
implicit concatenation, f-strings over module constants, dicts, lists, tuples, numbers); nothing
is executed. :data:`RECIPE` says where each value lives by name (a module constant and key, the
n-th assignment to a variable in a function, a message dict, the strings an ``in`` test compares,
a parameter or dataclass default, a call's keyword), so a change of the pinned commit that moves
lines still finds the values, and one that renames them fails loudly. The curated prose (``rules``,
``notes``) and the ``*_derived`` values (computed by running DT's code) are not generated.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from codesign.config import ConfigError
from codesign.data.repo import RepoFiles

LICENSE = ("CC BY-SA 4.0 (DecodingTrust, https://creativecommons.org/licenses/by-sa/4.0/legalcode): excerpts of "
           "DecodingTrust, shared under the same license")
BUILT_BY = ("codesign data dt-prompts: values are exact copies of literals read with Python's ast (YAML configs "
            "as whole lines); curated prose (rules, notes) and *_derived values are not generated")


class LiteralError(ValueError):
    pass


# -- reading literals ------------------------------------------------------------------------------
def literal(node: ast.AST, env: dict[str, Any]) -> Any:
    """Value of a literal expression; names and ``NAME[key]`` resolve in ``env`` (module constants),
    f-strings format such values, ``+`` joins strings/lists. Raises :class:`LiteralError` otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [literal(e, env) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {literal(k, env): literal(v, env) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.JoinedStr):
        return "".join(str(literal(v.value, env)) if isinstance(v, ast.FormattedValue) else literal(v, env)
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal(node.left, env) + literal(node.right, env)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -literal(node.operand, env)
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in env:
        return env[node.value.id][literal(node.slice, env)]
    if isinstance(node, ast.Attribute):  # an enum member such as SeparatorStyle.LLAMA2: its name
        return node.attr
    raise LiteralError(f"line {getattr(node, 'lineno', '?')}: not a literal ({type(node).__name__})")


def strings_in(node: ast.AST) -> list[str]:
    """String constants inside ``node``, in source order."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


@dataclass
class Module:
    """A parsed source file: its tree, module constants and lines."""

    path: str
    tree: ast.Module
    env: dict[str, Any]

    @classmethod
    def parse(cls, path: str, text: str) -> "Module":
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            raise ConfigError(f"{path}: not Python source ({exc})") from None
        env: dict[str, Any] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                try:
                    env[stmt.targets[0].id] = literal(stmt.value, env)
                except (LiteralError, KeyError, TypeError):
                    pass
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Subscript):
                _alias(stmt, env)
        return cls(path, tree, env)

    def function(self, name: str) -> ast.AST:
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return node
        raise ConfigError(f"{self.path}: no function {name!r}")

    def statement(self, name: str) -> ast.Assign:
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                return stmt
        raise ConfigError(f"{self.path}: no module-level assignment to {name!r}")


def _alias(stmt: ast.Assign, env: dict[str, Any]) -> None:
    """``D["new"] = D["old"]`` at module level (rare): keep env in step."""
    t = stmt.targets[0]
    if isinstance(t.value, ast.Name) and t.value.id in env:
        try:
            env[t.value.id][literal(t.slice, env)] = literal(stmt.value, env)
        except (LiteralError, KeyError, TypeError):
            pass


def _span(node: ast.AST) -> tuple[int, int]:
    return node.lineno, getattr(node, "end_lineno", node.lineno) or node.lineno


# -- locators: where a value lives ---------------------------------------------------------------
@dataclass(frozen=True)
class Var:
    """Module constant ``name`` (or its entry ``key``)."""

    name: str
    key: Any = None

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        stmt = m.statement(self.name)
        if self.name not in m.env:
            raise ConfigError(f"{m.path}: {self.name} is not a literal")
        if self.key is None:
            return m.env[self.name], _span(stmt)
        if not isinstance(stmt.value, ast.Dict) or self.key not in m.env[self.name]:
            raise ConfigError(f"{m.path}: {self.name} has no key {self.key!r}")
        i = [literal(k, m.env) for k in stmt.value.keys].index(self.key)
        return m.env[self.name][self.key], (stmt.value.keys[i].lineno, _span(stmt.value.values[i])[1])


@dataclass(frozen=True)
class Assigned:
    """The ``nth`` assignment to ``target`` in function ``func``: its literal value, or with
    ``const`` the const-th string constant of the assigned expression."""

    func: str
    target: str
    nth: int = 0
    const: int | None = None

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        found = [n for n in ast.walk(m.function(self.func)) if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == self.target for t in n.targets)]
        found.sort(key=lambda n: (n.lineno, n.col_offset))
        if len(found) <= self.nth:
            raise ConfigError(f"{m.path}: {self.func}() has {len(found)} assignments to {self.target!r}, "
                              f"not {self.nth + 1}")
        node = found[self.nth]
        if self.const is not None:
            return strings_in(node.value)[self.const], _span(node)
        return literal(node.value, m.env), _span(node)


@dataclass(frozen=True)
class Message:
    """The ``nth`` chat-message dict literal with ``"role": role`` in ``func``; the const-th string
    constant of its ``field``."""

    func: str
    role: str
    nth: int = 0
    field: str = "content"
    const: int = 0

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        dicts = []
        for n in ast.walk(m.function(self.func)):
            if isinstance(n, ast.Dict):
                keys = [k.value if isinstance(k, ast.Constant) else None for k in n.keys]
                if "role" in keys and strings_in(n.values[keys.index("role")]) == [self.role] and self.field in keys:
                    dicts.append((n, n.values[keys.index(self.field)]))
        dicts.sort(key=lambda d: (d[0].lineno, d[0].col_offset))
        if len(dicts) <= self.nth:
            raise ConfigError(f"{m.path}: {self.func}() has {len(dicts)} {self.role!r} messages with "
                              f"{self.field!r}, not {self.nth + 1}")
        node, value = dicts[self.nth]
        return strings_in(value)[self.const], _span(node)


@dataclass(frozen=True)
class Compared:
    """The strings that the innermost ``and``/``or`` test in ``func`` containing ``contains`` checks
    with ``in`` / ``not in``: an answer parser's keyword list."""

    func: str
    contains: str

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        tests = [n for n in ast.walk(m.function(self.func)) if isinstance(n, ast.BoolOp)
                 and all(isinstance(v, ast.Compare) and isinstance(v.ops[0], (ast.In, ast.NotIn)) for v in n.values)]
        for n in sorted(tests, key=lambda n: (n.lineno, n.col_offset)):
            words = [v.left.value for v in n.values if isinstance(v.left, ast.Constant)]
            if self.contains in words:
                return list(dict.fromkeys(words)), _span(n)
        raise ConfigError(f"{m.path}: {self.func}() has no keyword test containing {self.contains!r}")


@dataclass(frozen=True)
class Default:
    """Default value of parameter ``param`` of function ``func``, or of field ``param`` of the
    dataclass ``func`` (then ``cls=True``)."""

    func: str
    param: str
    cls: bool = False

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        if self.cls:
            for node in ast.walk(m.tree):
                if isinstance(node, ast.ClassDef) and node.name == self.func:
                    for st in node.body:
                        if isinstance(st, ast.AnnAssign) and getattr(st.target, "id", None) == self.param:
                            return literal(st.value, m.env) if st.value else None, _span(st)
            raise ConfigError(f"{m.path}: class {self.func} has no field {self.param!r}")
        f = m.function(self.func)
        args = f.args.args[len(f.args.args) - len(f.args.defaults):]
        for a, d in zip(args, f.args.defaults):
            if a.arg == self.param:
                return literal(d, m.env), (f.lineno, f.lineno)
        raise ConfigError(f"{m.path}: {self.func}() has no default for {self.param!r}")


@dataclass(frozen=True)
class CallKw:
    """Keyword ``kw`` of the call to ``call`` (a name or method) whose literal keywords include
    ``match``; absent keywords take the default of the called dataclass if this file defines it."""

    call: str
    kw: str
    match: tuple[tuple[str, Any], ...] = ()
    func: str | None = None

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        root = m.function(self.func) if self.func else m.tree
        for node in sorted((n for n in ast.walk(root) if isinstance(n, ast.Call)), key=lambda n: n.lineno):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            kws = {k.arg: k.value for k in node.keywords if k.arg}
            if name != self.call or any(k not in kws or strings_in(kws[k]) != [v] for k, v in self.match):
                continue
            if self.kw in kws:
                return literal(kws[self.kw], m.env), _span(kws[self.kw])
            return Default(self.call, self.kw, cls=True).find(m)[0], _span(node)
        raise ConfigError(f"{m.path}: no call to {self.call}({dict(self.match)})")


@dataclass(frozen=True)
class JsonField:
    """The JSON value of ``"key": ...`` written inside a string literal (a JSON record built by
    string concatenation), e.g. the options of DT's generated fairness prompts."""

    key: str

    def find(self, m: Module) -> tuple[Any, tuple[int, int]]:
        pat = re.compile(r'"%s":\s*(\[[^\]]*\])' % re.escape(self.key))
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hit = pat.search(node.value)
                if hit:
                    return json.loads(hit.group(1)), _span(node)
        raise ConfigError(f"{m.path}: no string literal holding a JSON {self.key!r} field")


@dataclass(frozen=True)
class YamlLines:
    """A YAML config file, as its lines (``key``: that key's parsed value instead)."""

    key: str | None = None


# -- the recipe: output file, path, key <- source file, locator ------------------------------------
ME = "src/dt/perspectives/machine_ethics/test_machine_ethics.py"
ME_SCORE = "src/dt/perspectives/machine_ethics/calculate_score.py"
ADV = "src/dt/perspectives/advglue/gpt_eval.py"
OOD = "src/dt/perspectives/ood/evaluation_ood.py"
FAIR_DESC = "src/dt/perspectives/fairness/task_description.py"
FAIR_GEN = "data/fairness/data_generation.py"
FAIR_SCORE = "src/dt/perspectives/fairness/score_calculation_script.py"
CHAT = "src/dt/chat.py"
CONV = "src/dt/conversation.py"
CONFIGS = "src/dt/configs/configs.py"
ADV_TASKS = ("sst2", "qqp", "mnli", "mnli-mm", "qnli", "rte")
#: gpt_eval.main() sets TASK2SHORTPROMPT["mnli-mm"] = TASK2SHORTPROMPT["mnli"]; mnli-mm has no demos
ADV_PROMPT_KEY = {"mnli-mm": "mnli"}
FAIRNESS_CONFIGS = ("zero_shot_br_0.0", "zero_shot_br_0.5", "zero_shot_br_1.0", "few_shot_tr_br_0.0",
                    "few_shot_tr_br_0.5", "few_shot_tr_br_1.0", "few_shot_16_fair_demon", "few_shot_32_fair_demon",
                    "few_shot_0_fair_demon", "crime_br_0.0", "crime_br_0.5", "crime_br_1.0")


@dataclass(frozen=True)
class Leaf:
    out: str  # output file stem
    path: tuple  # keys (str) and list positions (int) of the enclosing object
    key: str
    file: str
    where: Any  # a locator


def _recipe() -> list[Leaf]:
    L, cfg = Leaf, "src/dt/configs"
    me = [L("machine_ethics", ("data_name",), "value", f"{cfg}/machine_ethics/ethics_commonsense_short.yaml",
            YamlLines("data_name")),
          L("machine_ethics", ("options",), "value", ME, Var("OPTION_DIC", "ethics_commonsense_short")),
          L("machine_ethics", ("task_message",), "text", ME, Var("MESSAGE_DIC", "ethics_commonsense_short")),
          L("machine_ethics", ("test_input",), "suffix", ME, Assigned("load_dataset", "uni_input", 0, const=0)),
          L("machine_ethics", ("few_shot_demonstrations",), "suffix", ME,
            Assigned("load_dataset", "uni_eg_input", 0, const=0)),
          L("machine_ethics", ("jailbreak_prompts",), "prompts", ME, Var("PROMPT_DIC")),
          L("machine_ethics", ("evasive_sentences",), "sentences", ME, Var("EVASIVE_DIC")),
          L("machine_ethics", ("jiminy_dicts_not_used_for_this_dataset",), "JIMINY_PROMPT_DIC", ME,
            Var("JIMINY_PROMPT_DIC")),
          L("machine_ethics", ("jiminy_dicts_not_used_for_this_dataset",), "JIMINY_EVASIVE_DIC", ME,
            Var("JIMINY_EVASIVE_DIC")),
          L("machine_ethics", ("settings", "config_file"), "yaml",
            f"{cfg}/machine_ethics/ethics_commonsense_short.yaml", YamlLines()),
          L("machine_ethics", ("chat_call",), "max_tokens", CHAT, Default("do_classification", "max_tokens")),
          L("machine_ethics", ("scoring",), "IMMORAL_WORDS", ME_SCORE, Var("IMMORAL_WORDS"))]
    adv = []
    for t in ADV_TASKS:
        adv += [L("advglue", ("tasks", t), "task_description", ADV, Var("TASK2SHORTPROMPT", ADV_PROMPT_KEY.get(t, t))),
                L("advglue", ("tasks", t), "input_keys", ADV, Var("task_to_keys", t)),
                L("advglue", ("tasks", t), "answer_mapping", ADV, Var("answer_mapping", t)),
                L("advglue", ("tasks", t), "glue_config_name", ADV, Var("tasks_to_glue", t))]
        if t != "mnli-mm":
            adv.append(L("advglue", ("tasks", t, "demonstrations"), "messages", ADV, Var("TASK2DEMO", t)))
    adv += [L("advglue", ("settings", "configs", c), "yaml", f"{cfg}/advglue/{c}.yaml", YamlLines())
            for c in ("alpaca", "vicuna", "stable-vicuna", "benign")]
    ood = [L("ood", ("task_lists",), k, OOD, Var(k)) for k in ("TASK", "DEMO", "OOD_TASK", "OOD_DEMO")]
    ood += [L("ood", ("style", "task_message"), "text", OOD, Assigned("load_task_messages", "task_message", 2)),
            L("ood", ("style", "options"), "value", OOD, Assigned("load_prompts", "labels", 0)),
            L("ood", ("style", "zero_shot", "config"), "yaml", f"{cfg}/ood/style.yaml", YamlLines()),
            L("ood", ("style", "few_shot", "config"), "yaml", f"{cfg}/ood/style_8shot.yaml", YamlLines()),
            L("ood", ("knowledge", "task_message_standard"), "text", OOD,
              Assigned("load_task_messages", "task_message", 1)),
            L("ood", ("knowledge", "task_message_idk"), "text", OOD, Assigned("load_task_messages", "task_message", 0)),
            L("ood", ("knowledge", "test_input"), "options_idk", OOD, Assigned("load_prompts", "option", 0)),
            L("ood", ("knowledge", "test_input"), "options_standard", OOD, Assigned("load_prompts", "option", 1)),
            L("ood", ("knowledge", "zero_shot_configs", "knowledge_standard"), "yaml",
              f"{cfg}/ood/knowledge_standard.yaml", YamlLines()),
            L("ood", ("knowledge", "zero_shot_configs", "knowledge_idk"), "yaml",
              f"{cfg}/ood/knowledge_idk.yaml", YamlLines()),
            L("ood", ("knowledge", "few_shot_2020", "config"), "yaml", f"{cfg}/ood/knowledge_2020_5shot.yaml",
              YamlLines()),
            L("ood", ("chat_call",), "max_tokens", CHAT, Default("do_classification", "max_tokens"))]
    fair = [L("fairness", ("task_descriptions",), "task_dic", FAIR_DESC, Var("task_dic")),
            L("fairness", ("task_descriptions", "adult"), "text", FAIR_DESC, Var("task_dic", "adult")),
            L("fairness", ("options",), "value", FAIR_GEN, JsonField("option")),
            L("fairness", ("generation",), "max_tokens", CONFIGS, Default("FairnessConfig", "max_tokens", cls=True))]
    fair += [L("fairness", ("settings", "configs", i), "yaml", f"{cfg}/fairness/{c}.yaml", YamlLines())
             for i, c in enumerate(FAIRNESS_CONFIGS)]
    chat = [L("chat_protocol", ("do_classification", "zero_shot"), "system", CHAT,
              Message("do_classification", "system", 0)),
            L("chat_protocol", ("do_classification", "zero_shot"), "joiner", CHAT,
              Message("do_classification", "user", 0)),
            L("chat_protocol", ("do_classification", "few_shot_example_prefix_false"), "system", CHAT,
              Message("do_classification", "system", 2)),
            L("chat_protocol", ("do_classification", "few_shot_example_prefix_false"), "assistant_acknowledgement",
              CHAT, Message("do_classification", "assistant", 0)),
            L("chat_protocol", ("do_classification", "few_shot_example_prefix_true"), "system_prefix", CHAT,
              Message("do_classification", "system", 1)),
            L("chat_protocol", ("do_classification", "generation"), "max_tokens_default", CHAT,
              Default("do_classification", "max_tokens"))]
    for tpl in ("llama-2", "vicuna_v1.1"):
        chat += [L("chat_protocol", ("hf_chat_rendering", "templates", tpl), k, CONV,
                   CallKw("Conversation", k, (("name", tpl),)))
                 for k in ("system", "roles", "sep_style", "sep", "sep2", "stop_str", "stop_token_ids")]
    chat += [L("chat_protocol", ("generation_settings", p), "max_tokens", CHAT, Default("do_classification", "max_tokens"))
             for p in ("machine_ethics", "ood")]
    chat += [L("chat_protocol", ("generation_settings", "advglue"), "max_tokens", ADV,
               CallKw("call", "max_tokens", func="classify")),
             L("chat_protocol", ("generation_settings", "fairness"), "max_tokens", CONFIGS,
               Default("FairnessConfig", "max_tokens", cls=True)),
             L("chat_protocol", ("answer_parsing", "ood_style"), "keywords", OOD, Compared("evaluation", "positive")),
             L("chat_protocol", ("answer_parsing", "ood_knowledge"), "refusal_keywords", OOD,
               Compared("evaluation", "sorry")),
             L("chat_protocol", ("answer_parsing", "fairness_adult"), "yes_keywords", FAIR_SCORE,
               Compared("aggregate_current_scores", "Yes")),
             L("chat_protocol", ("answer_parsing", "fairness_adult"), "no_keywords", FAIR_SCORE,
               Compared("aggregate_current_scores", "No")),
             L("chat_protocol", ("answer_parsing", "machine_ethics"), "IMMORAL_WORDS", ME_SCORE, Var("IMMORAL_WORDS"))]
    return me + adv + ood + fair + chat


RECIPE: list[Leaf] = _recipe()
OUTPUTS = ("machine_ethics", "advglue", "ood", "fairness", "chat_protocol")


# -- building ------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    """Tuples become lists and dict keys strings, as JSON holds them."""
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _container(root: dict, path: tuple) -> dict:
    node: Any = root
    for i, step in enumerate(path):
        if isinstance(step, int):
            while len(node) <= step:
                node.append({})
            node = node[step]
        else:
            nxt = path[i + 1] if i + 1 < len(path) else None
            node = node.setdefault(step, [] if isinstance(nxt, int) else {})
    return node


def _locate(leaf: Leaf, files: RepoFiles, cache: dict) -> tuple[Any, tuple[int, int]]:
    if leaf.file not in cache:
        cache[leaf.file] = files.read_text(leaf.file)
    text = cache[leaf.file]
    if isinstance(leaf.where, YamlLines):
        lines = text.splitlines()
        while lines and not lines[-1].strip():  # trailing blank lines are not part of the config
            lines.pop()
        if leaf.where.key is None:
            return lines, (1, len(lines))
        data = yaml.safe_load(text) or {}
        if leaf.where.key not in data:
            raise ConfigError(f"{leaf.file}: no key {leaf.where.key!r}")
        row = next(i for i, ln in enumerate(lines, 1) if ln.startswith(f"{leaf.where.key}:"))
        return data[leaf.where.key], (row, row)
    key = ("module", leaf.file)
    if key not in cache:
        cache[key] = Module.parse(leaf.file, text)
    try:
        return leaf.where.find(cache[key])
    except (LiteralError, IndexError) as exc:
        raise ConfigError(f"{leaf.file}: {leaf.where}: {exc}") from None


def build_prompt_files(files: RepoFiles, recipe: list[Leaf] | None = None) -> dict[str, dict]:
    """``{stem: JSON object}`` for every output file of ``recipe``, values read from ``files``.

    Each object that receives values gets ``source``: the lines of its first value, widened over
    the values that follow them directly in the same file; other places go to ``source_also``."""
    out: dict[str, dict] = {}
    cache: dict = {}
    spans: dict[int, tuple[dict, list[list]]] = {}  # id(object) -> (object, [[file, first, last], ...])
    for leaf in recipe or RECIPE:
        value, (a, b) = _locate(leaf, files, cache)
        doc = out.setdefault(leaf.out, {"source_commit": f"{files.repo}@{files.commit}", "license": LICENSE,
                                        "built_by": BUILT_BY})
        node = _container(doc, leaf.path)
        ranges = spans.setdefault(id(node), (node, []))[1]
        near = [r for r in ranges if r[0] == leaf.file and a <= r[2] + 2 and b >= r[1] - 2]
        if near:
            near[0][1], near[0][2] = min(near[0][1], a), max(near[0][2], b)
        else:
            ranges.append([leaf.file, a, b])
        node[leaf.key] = _jsonable(value)
    for node, ranges in spans.values():
        refs = list(dict.fromkeys(f"{files.label}:{f}:{a}" + (f"-{b}" if b != a else "") for f, a, b in ranges))
        node["source"] = refs[0]
        if refs[1:]:
            node["source_also"] = refs[1:]
    return out


def write_prompt_files(docs: dict[str, dict], out: Path, force: bool = False) -> list[Path]:
    """Write ``<stem>.json`` files into ``out`` (refusing to overwrite without ``force``)."""
    out = Path(out)
    targets = [out / f"{stem}.json" for stem in docs]
    clash = [str(p) for p in targets if p.exists()]
    if clash and not force:
        raise ConfigError(f"--out: {clash} exist (allowed: a folder without them; pass --force to overwrite)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for p, doc in zip(targets, docs.values()):
            p.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise ConfigError(f"--out: cannot write to {out} ({exc.strerror}; allowed: a writable folder)") from None
    return targets


# -- comparing with a curated copy ---------------------------------------------------------------
def _leaves(doc: Any, path: tuple = ()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in ("source", "source_also", "source_commit", "license", "built_by"):
                continue
            if isinstance(v, (dict, list)) and k not in _VALUE_KEYS:
                yield from _leaves(v, path + (k,))
            else:
                yield path + (k,), v
    elif isinstance(doc, list) and doc and all(isinstance(x, dict) for x in doc):
        for i, v in enumerate(doc):
            yield from _leaves(v, path + (i,))
    else:
        yield path, doc


_VALUE_KEYS = {leaf.key for leaf in RECIPE}


def _get(doc: Any, path: tuple) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                raise KeyError(step)
        elif not isinstance(doc, dict) or step not in doc:
            raise KeyError(step)
        doc = doc[step]
    return doc


def compare_with(docs: dict[str, dict], reference: Path) -> list[dict]:
    """Each built value against the same key in a curated copy (``reference`` folder of the same
    layout): rows ``file, path, status`` (``same`` / ``differs`` / ``absent``) and whether the
    ``source`` of the enclosing object agrees."""
    rows = []
    for stem, doc in docs.items():
        ref_path = Path(reference) / f"{stem}.json"
        ref = json.loads(ref_path.read_text()) if ref_path.exists() else {}
        for path, value in _leaves(doc):
            try:
                other = _get(ref, path)
                status = "same" if other == value else "differs"
            except KeyError:
                status = "absent"
            try:
                same_src = _get(doc, path[:-1] + ("source",)) == _get(ref, path[:-1] + ("source",))
            except KeyError:
                same_src = False
            rows.append({"file": f"{stem}.json", "path": "/".join(map(str, path)), "status": status,
                         "same_source": same_src})
    return rows
