#!/usr/bin/env python3
"""Points citations of payhook's former design documents at the repository files that now hold them.

Comments used to cite design documents kept outside the repository: "reliability.md §6", "contract §3",
"protocols.md §2.4", "(contract.md §5)", and bare "§12" that continue such a citation. Their content now
lives in the repository (docs/durability.md, docs/contract.md, docs/protocols.md, ...), under section
numbers of its own. This tool rewrites each citation through the section-by-section table below, so that
it can be run again on any tree, however its files have moved since:

    python3 tools/rewrite-citations.py ROOT            # rewrites in place, prints a summary
    python3 tools/rewrite-citations.py ROOT --dry-run  # the same summary, nothing written
    python3 tools/rewrite-citations.py ROOT --check    # exit 1 listing every citation with no home in ROOT
    add --verbose to list every rewrite

What counts as a citation:

- a document name: reliability.md, protocols.md, contract.md, house-style.md, peers.md, research/..., and
  "contract"/"Contract", "reliability" or "protocols" directly followed by "§N" or "section N"; a name that
  resolves to a file of ROOT relative to the citing file (docs/ citing its neighbours) is not one;
- the "§N" (or "§N–M") tokens that follow it, and those that continue it: ", §M", " and §M", "/§M", also
  across a comment line break;
- a bare "§N" elsewhere, resolved to the document named last before it on its line (so "XML 1.0 §2.2",
  "RFC 9112 §6.1" or "TOML 1.0 §Table" are left alone), or else to the last document named with its ".md"
  file name earlier in the file (the informal "contract §4.1" does not count: it is always written out).
  Such a "§N" is rewritten with its new file spelled out, since the document named before it may now be
  another.

A citation whose section has no home in the repository (for instance a chapter about a provider payhook
does not implement) is left unchanged and listed; --check fails on it, on any remaining name of a former
document, on a bare "the contract", on any mention of the old documents' folder, and on a citation of a
repository document whose section heading does not exist there.

Python 3 standard library only.
"""
import argparse
import os
import re
import signal
import sys

# ---------------------------------------------------------------------------------------------------------
# The mapping, section by section. A key of None is a citation of the document as a whole. A section not in
# its table falls back to its nearest listed parent (§4.3.2 → §4.3 → §4). A target section of None cites the
# target file as a whole; a target of None means "no home in the repository".

DURABILITY = "docs/durability.md"
PROTOCOLS = "docs/protocols.md"
CONTRACT = "docs/contract.md"
LIMITS = "docs/limits.md"

MAPPING = {
    # Former reliability.md: durability research → docs/durability.md (and two neighbours).
    "reliability": {
        None: (DURABILITY, None),
        "0": (DURABILITY, "1"),        # the promise
        "0.1": (DURABILITY, "1.1"),    # success means durable
        "0.2": (DURABILITY, "1.2"),    # exactly once per key; a duplicate writes nothing
        "0.3": (DURABILITY, "1.3"),    # nothing torn visible
        "0.4": (DURABILITY, "1.4"),    # fast answers
        "0.5": (DURABILITY, "1.5"),    # fail closed and loud
        "1": (DURABILITY, "3"),        # Maildir delivery, link not rename, O_TMPFILE
        "2": (DURABILITY, "7"),        # Postfix: queue_minfree (the free-space reserve), corrupt/
        "3": (DURABILITY, "10.3"),     # SQLite: crash-testing file system
        "4": (DURABILITY, "10.1"),     # ALICE: the checker
        "5": (DURABILITY, "3.4"),      # LMDB: ordered flushes, no fast mode
        "6": (DURABILITY, "6"),        # fsyncgate: rule 1 (file), rule 2 (directory)
        "7": (PROTOCOLS, "1"),         # what the providers require
        "8": (DURABILITY, "4"),        # deduplication, races, pruning
        "9": (LIMITS, None),           # libmicrohttpd limits
        "10": (DURABILITY, "5"),       # group commit
        "11": (DURABILITY, "10"),      # test techniques
        "11.1": (DURABILITY, "10.2"),  # kill -9 under load
        "11.2": (DURABILITY, "10.3"),  # simulated power loss
        "11.3": (DURABILITY, "10.4"),  # ENOSPC
        "11.4": (DURABILITY, "10.5"),  # fault injection
        "11.5": (DURABILITY, "10.5"),  # fsync failure handling
        "11.6": ("Fuzz/README.md", None),
        "11.7": (LIMITS, "8"),         # slowloris: every defence and its test
        "11.8": (DURABILITY, "10.6"),  # graceful shutdown, recovery idempotence
        "12": (DURABILITY, "8"),       # recovery at startup
        "13": (DURABILITY, "3"),       # the checklist
    },
    # Former contract.md → docs/contract.md, same numbers; its v2 additions describe nothing payhook does.
    "contract": {
        None: (CONTRACT, None),
        "1": (CONTRACT, "1"),
        "2": (CONTRACT, "2"),
        "3": (CONTRACT, "3"),
        "4": (CONTRACT, "4"),
        "4.1": (CONTRACT, "4.1"),      # invariant 1
        "4.2": (CONTRACT, "4.2"),      # invariant 2
        "4.3": (CONTRACT, "4.3"),      # invariant 3
        "4.4": (CONTRACT, "4.4"),      # invariant 4
        "4.5": (CONTRACT, "4.5"),      # invariant 5
        "5": (CONTRACT, "5"),
        "6": None,                     # WeChat v3, Alipay, XxPay, Jeepay: not implemented
        "7": None,                     # a PostgreSQL store: not implemented
        "8": None,                     # proxies, TLS, SIGHUP: not implemented
    },
    # Former protocols.md → docs/protocols.md.
    "protocols": {
        None: (PROTOCOLS, None),
        "0": (PROTOCOLS, "1.1"),       # the matrix
        "1": (PROTOCOLS, "4"),         # WeChat v2 payment results
        "1.1": (PROTOCOLS, "3.1"),     # transport
        "1.2": (PROTOCOLS, "4.1"),     # fields
        "1.3": (PROTOCOLS, "4.2"),     # string to sign
        "1.4": (PROTOCOLS, "4.3"),     # which algorithm
        "1.5": (PROTOCOLS, "3.2"),     # XML safety
        "1.6": (PROTOCOLS, "3.4"),     # acknowledgement
        "1.7": (PROTOCOLS, "3.5"),     # retries
        "1.8": (PROTOCOLS, "4.6"),     # payment vectors
        "2": (PROTOCOLS, "5"),         # WeChat v2 refund results, req_info, vector V2-R
        "3": None,                     # WeChat v3: not implemented
        "4": (PROTOCOLS, "2"),         # the unified platform
        "4.1": (PROTOCOLS, "2"),
        "4.2": (PROTOCOLS, "2.1"),     # callback fields and answer
        "4.3": (PROTOCOLS, "2.3"),     # values-sha1
        "4.4": (PROTOCOLS, "2.4"),     # salted-sha1
        "4.5": (PROTOCOLS, "2.2"),     # form decoding, UTF-16 order
        "5": None,                     # XxPay, Jeepay: not implemented
        "6": None,                     # integrators' pitfalls, all providers
        "7": (PROTOCOLS, "1"),         # the receiver checklist
    },
    "house-style": {None: None},
    "peers": {None: None},
    "research": {None: None},
}

# Bare phrases that cite the contract without a section.
PHRASES = [
    (re.compile(r"\bthe contract says\b"), CONTRACT + " §1 says"),
    (re.compile(r"\bin the contract's order\b"), "in the order of " + CONTRACT + " §5"),
    # A paragraph title quoted after "reliability.md §10"; docs/durability.md §5 words it for any reader.
    (re.compile(r'(reliability\.md §10, )"Measured on this VM"'), r'\1"Measured on a VM"'),
]

# ---------------------------------------------------------------------------------------------------------
# Patterns.

SKIP_DIRS = {".git", ".build", ".swiftpm", "node_modules", "__pycache__", ".data"}
SELF = os.path.join("tools", "rewrite-citations.py")

# The folder the former documents lived in, when a citation spells it: a relative or an absolute path to a
# folder named "shared" beside or above the repository.
OLD_FOLDER = r"(?:(?:\.\./)+shared/|/(?:[\w.-]+/)+shared/)"

SHARED_MENTION = re.compile(
    r"(?<![\w/.-])(?P<prefix>" + OLD_FOLDER + r")?"
    r"(?P<name>"
    r"(?P<doc>reliability|protocols|contract|house-style|peers)\.md\b"
    r"|(?P<research>research/[\w.-]+(?:/[\w.-]+)*)"
    r"|(?P<informal>[Cc]ontract|reliability|protocols)(?=(?:\s*(?:\n\s*(?:///?|#|\*|--))?\s*)(?:§\s?\d|section\s+\d))"
    r")"
)
REPO_MENTION = re.compile(r"(?<![\w/.-])(?P<name>(?:[\w.-]+/)*[\w.-]+\.md)\b")
STANDARD_MENTION = re.compile(r"\b(?:XML \d\.\d|TOML \d\.\d|RFC ?\d{3,5}|HTTP/\d(?:\.\d)?|ISO \d+)")
SECTION = re.compile(r"§ ?(?P<a>\d+(?:\.\d+)*)(?:\s?[–-]\s?(?P<b>\d+(?:\.\d+)*))?")
WORD_SECTION = re.compile(r"section\s+(?P<a>\d+(?:\.\d+)*)")
OLD_FOLDER_ANYWHERE = re.compile(
    r"(?:\.\./)+shared\b|(?<![\w.])/(?:[\w.-]+/)+shared/(?=(?:reliability|protocols|contract|house-style|peers)\.md|research/)")
THE_CONTRACT = re.compile(r"\bthe contract\b(?!\.md)", re.I)

COMMENT_BREAK = re.compile(r"\n[ \t]*(?:///?|#|\*|--)?[ \t]*")
HEAD_GAP = re.compile(r"^[ \t:(\])]*$")
CHAIN_GAP = re.compile(r'^[ \t]*(?:"[^"\n]{1,40}"[ \t]*)?(?:[,;/&][ \t]*|(?:and|or)[ \t]+)?$')
WORDY_CHAIN_GAP = re.compile(r"^[ \t]*[\w-]+(?:[ \t]+[\w-]+){0,2}[ \t]*[,;][ \t]*$")


def squeeze(gap):
    """The gap between two tokens with comment line breaks taken out."""
    return COMMENT_BREAK.sub(" ", gap)


class Mention:
    def __init__(self, start, end, kind, doc, text):
        self.start, self.end = start, end
        self.kind = kind        # "shared", "repo", "standard"
        self.doc = doc          # for shared: reliability/protocols/contract/...; for repo: the path
        self.text = text
        self.formal = kind != "shared" or not text.endswith(("contract", "Contract", "reliability", "protocols"))


class Section:
    def __init__(self, m, start, end, a, b, worded):
        self.match = m
        self.start, self.end = start, end
        self.a, self.b = a, b
        self.worded = worded    # "section N" rather than "§N"
        self.doc = None         # resolved: ("shared", name) or ("repo", path) or None
        self.how = None         # "head", "chain", "line", "file"
        self.anchored = False   # a head, or chained to one: the document is named right before it


def resolve_repo_path(root, citing, name):
    """The repository path `name` means when written in `citing`, if it exists: relative to the citing file's
    folder, else to the root."""
    folder = os.path.dirname(citing)
    for base in (folder, ""):
        path = os.path.normpath(os.path.join(base, name))
        if not path.startswith("..") and os.path.isfile(os.path.join(root, path)):
            return path
    return None


def scan(root, rel, text):
    """Every mention and section token of a file, in order."""
    mentions = []
    for m in SHARED_MENTION.finditer(text):
        name = m.group("name")
        if m.group("research"):
            doc = "research"
        elif m.group("informal"):
            doc = m.group("informal").lower()
        else:
            doc = m.group("doc")
            # A neighbour in the repository (docs/ citing docs/contract.md as "contract.md") is not a
            # citation of a former document, unless it is written with the old folder's prefix.
            if not m.group("prefix") and resolve_repo_path(root, rel, name):
                mentions.append(Mention(m.start(), m.end(), "repo", resolve_repo_path(root, rel, name), name))
                continue
        mentions.append(Mention(m.start(), m.end(), "shared", doc, m.group(0)))
    taken = [(x.start, x.end) for x in mentions]
    for m in REPO_MENTION.finditer(text):
        if any(s <= m.start() < e for s, e in taken):
            continue
        path = resolve_repo_path(root, rel, m.group("name"))
        if path:
            mentions.append(Mention(m.start(), m.end(), "repo", path, m.group(0)))
    for m in STANDARD_MENTION.finditer(text):
        mentions.append(Mention(m.start(), m.end(), "standard", m.group(0), m.group(0)))
    mentions.sort(key=lambda x: x.start)

    sections = []
    for m in SECTION.finditer(text):
        sections.append(Section(m, m.start(), m.end(), m.group("a"), m.group("b"), False))
    # "section N" only right after a former document's name ("Contract section 5").
    for mention in mentions:
        if mention.kind != "shared":
            continue
        at = mention.end
        while at < len(text) and text[at] in " \t":
            at += 1
        m = WORD_SECTION.match(text, at)
        if m:
            sections.append(Section(m, m.start(), m.end(), m.group("a"), None, True))
    sections.sort(key=lambda x: x.start)
    return mentions, sections


def resolve(text, mentions, sections):
    """Decides which document each section token cites."""
    events = sorted([(m.start, "m", m) for m in mentions] + [(s.start, "s", s) for s in sections],
                    key=lambda e: e[0])
    previous = None
    for _, kind, item in events:
        if kind == "m":
            previous = item
            continue
        s = item
        if previous is not None:
            gap = squeeze(text[previous.end:s.start])
            if isinstance(previous, Mention) and HEAD_GAP.match(gap):
                s.doc, s.how, s.anchored = (previous.kind, previous.doc), "head", True
            elif isinstance(previous, Section) and previous.doc and (CHAIN_GAP.match(gap) or WORDY_CHAIN_GAP.match(gap)):
                s.doc, s.how, s.anchored = previous.doc, "chain", previous.anchored
        if s.doc is None:
            line_start = text.rfind("\n", 0, s.start) + 1
            on_line = [m for m in mentions if line_start <= m.start and m.end <= s.start]
            if on_line:
                s.doc, s.how = (on_line[-1].kind, on_line[-1].doc), "line"
            else:
                formal = [m for m in mentions if m.end <= s.start and m.formal and m.kind in ("shared", "repo")]
                if formal:
                    s.doc, s.how = (formal[-1].kind, formal[-1].doc), "file"
        previous = s


def target_of(doc, section):
    """(file, section) for a former document's section, or None when it has no home."""
    table = MAPPING.get(doc, {None: None})
    if section is None:
        return table.get(None)
    key = section
    while True:
        if key in table:
            return table[key]
        if "." not in key:
            return None
        key = key.rsplit(".", 1)[0]


def rewrite(root, rel, text, report):
    """Returns the new text. `report` collects (kind, message) pairs and counts."""
    for pattern, replacement in PHRASES:
        for m in reversed(list(pattern.finditer(text))):
            new = m.expand(replacement)
            report["phrases"] += 1
            report["rewrites"].append((rel, f"{line_of(text, m.start())}: {m.group(0)!r} → {new!r}"))
            text = text[:m.start()] + new + text[m.end():]
    mentions, sections = scan(root, rel, text)
    resolve(text, mentions, sections)

    edits = []              # (start, end, replacement)
    cited_mentions = set()  # names followed by a section: rewritten (or kept) with it, not as a whole
    events = sorted([(m.start, "m", m) for m in mentions] + [(s.start, "s", s) for s in sections],
                    key=lambda e: e[0])
    # The file a reader takes a bare "§N" in a chain to be in, at this point: the one the chain's head names
    # after the rewrite, or None when the head is a former document left unchanged.
    current_file = None
    previous = None
    for _, kind, item in events:
        if kind == "m":
            previous = item
            continue
        s = item
        if not s.doc or s.doc[0] != "shared":
            if s.doc and s.doc[0] == "repo" and s.how == "head":
                current_file = s.doc[1]
            previous = s
            continue
        doc = s.doc[1]
        if s.how == "head":
            cited_mentions.add(previous.start)
        old = f"§{s.a}" + (f"–{s.b}" if s.b else "")
        targets = [target_of(doc, s.a)] + ([target_of(doc, s.b)] if s.b else [])
        if any(t is None for t in targets):
            report["homeless"].append((rel, line_of(text, s.start), f"{doc} {old}"))
            if s.how != "head" and (s.how != "chain" or current_file is not None):
                # The document named before it is now another: name the former one, so that --check sees it.
                edits.append((s.start, s.end, f"{doc}.md {old}"))
            if s.how == "head":
                current_file = None
            previous = s
            continue
        file_a, sec_a = targets[0]
        new = "§" + sec_a if sec_a else ""
        if s.b:
            file_b, sec_b = targets[1]
            if file_b == file_a and sec_b and sec_a and sec_b != sec_a:
                new += "–" + sec_b
            elif file_b != file_a:
                new += ", " + file_b + (" §" + sec_b if sec_b else "")
        if s.how == "head":
            edits.append((previous.start, previous.end, file_a))
            edits.append((s.start, s.end, new))
        elif s.how == "chain" and current_file == file_a and new:
            edits.append((s.start, s.end, new))
        else:
            edits.append((s.start, s.end, file_a + (" " + new if new else "")))
        report["mapped"][(doc, old)] = (file_a, new or "(whole file)")
        report["sections"] += 1
        report["rewrites"].append((rel, f"{line_of(text, s.start)}: {doc} {old} → {file_a} {new}".rstrip()))
        current_file = file_a
        previous = s
    # Names of former documents cited without a section.
    for m in mentions:
        if m.kind != "shared" or m.start in cited_mentions:
            continue
        target = target_of(m.doc, None)
        if target is None:
            report["homeless"].append((rel, line_of(text, m.start), m.text))
            continue
        edits.append((m.start, m.end, target[0]))
        report["mapped"][(m.doc, "(whole)")] = (target[0], "(whole file)")
        report["names"] += 1
        report["rewrites"].append((rel, f"{line_of(text, m.start)}: {m.text} → {target[0]}"))
    edits.sort(key=lambda e: e[0], reverse=True)
    for start, end, new in edits:
        text = text[:start] + new + text[end:]
    return text


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def headings(root, path, cache={}):
    """The numbered sections of a Markdown file: "## 4. Title" → "4", "### 4.2 Title" → "4.2"."""
    if path not in cache:
        found = set()
        try:
            with open(os.path.join(root, path), encoding="utf-8") as f:
                for line in f:
                    m = re.match(r"#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", line)
                    if m:
                        found.add(m.group(1))
        except OSError:
            pass
        cache[path] = found
    return cache[path]


def check(root, rel, text, problems):
    mentions, sections = scan(root, rel, text)
    resolve(text, mentions, sections)
    for m in mentions:
        if m.kind == "shared":
            problems.append((rel, line_of(text, m.start), f"cites {m.text!r}, which is not a file of the repository"))
    for s in sections:
        if s.doc and s.doc[0] == "shared":
            problems.append((rel, line_of(text, s.start), f"'§{s.a}' continues a citation of {s.doc[1]}"))
        elif s.doc and s.doc[0] == "repo" and s.anchored and s.doc[1].endswith(".md"):
            known = headings(root, s.doc[1])
            for number in filter(None, (s.a, s.b)):
                if known and number not in known:
                    problems.append((rel, line_of(text, s.start), f"{s.doc[1]} has no section {number}"))
    for m in OLD_FOLDER_ANYWHERE.finditer(text):
        problems.append((rel, line_of(text, m.start()), f"mentions the former documents' folder: {m.group(0)!r}"))
    for m in THE_CONTRACT.finditer(text):
        problems.append((rel, line_of(text, m.start()), f"{m.group(0)!r} cites no file: name docs/contract.md and its section"))


def files(root):
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel == SELF or os.path.islink(path):
                continue
            try:
                if os.path.getsize(path) > 2 * 1024 * 1024:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if b"\0" in data:
                continue
            try:
                yield rel, path, data.decode("utf-8")
            except UnicodeDecodeError:
                continue


def main():
    # Piped into head(1) and the like: stop quietly when the reader has gone.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the tree to rewrite or check")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 listing citations without a home")
    parser.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    parser.add_argument("--verbose", action="store_true", help="list every rewrite")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        parser.error(f"{args.root} is not a directory")

    if args.check:
        problems = []
        for rel, _, text in files(root):
            check(root, rel, text, problems)
        for rel, line, message in problems:
            print(f"{rel}:{line}: {message}")
        if problems:
            print(f"{len(problems)} citation(s) without a home in the repository", file=sys.stderr)
            return 1
        print("every citation points at a file of the repository")
        return 0

    report = {"rewrites": [], "homeless": [], "mapped": {}, "sections": 0, "names": 0, "phrases": 0}
    changed = []
    long_lines = []
    for rel, path, text in files(root):
        new = rewrite(root, rel, text, report)
        if new == text:
            continue
        changed.append(rel)
        before = {line for line in text.split("\n") if len(line) > 120}
        long_lines += [(rel, n + 1) for n, line in enumerate(new.split("\n"))
                       if len(line) > 120 and line not in before]
        if not args.dry_run:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(new)

    verb = "would rewrite" if args.dry_run else "rewrote"
    print(f"{verb} {report['sections']} section citation(s), {report['names']} citation(s) of a whole document "
          f"and {report['phrases']} phrase(s) in {len(changed)} file(s)")
    if args.verbose:
        for rel, what in report["rewrites"]:
            print(f"  {rel}: {what}")
    print("mapping used:")
    for (doc, old), (file, new) in sorted(report["mapped"].items()):
        print(f"  {doc} {old} → {file} {new}")
    if report["homeless"]:
        print("left unchanged, no home in the repository:")
        for rel, line, what in report["homeless"]:
            print(f"  {rel}:{line}: {what}")
    if long_lines:
        print(f"lines now longer than 120 characters: {len(long_lines)}")
        for rel, line in long_lines:
            print(f"  {rel}:{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
