import Glibc
import PayhookSpool
import PayhookSpoolFormat
import Synchronization

/// An in-memory ``SpoolFileSystem`` that records what the spool does and can produce every on-disk state a
/// power loss may leave at any point: SQLite's crash VFS (`src/test6.c`) and ALICE's abstract persistence model
/// (Pillai et al., OSDI'14), built in-process (docs/durability.md §10.3).
///
/// **Objects.** Inodes are files (bytes) or directories (name → inode). Link counts are the number of directory
/// entries naming an inode. There is one device; locks are `flock` locks per inode.
///
/// **Persistence model.** Every change is appended to a log:
/// - directory operations (`open` with `O_CREAT`, `link`, `mkdir`, `unlink`, `rename`) belong to the directory
///   whose entries they change (a `rename` between two directories belongs to both and is atomic);
/// - data operations (`write`, `ftruncate`) belong to the file's inode;
/// - `fsync(fd)` makes every earlier operation of *that* inode durable: a file's data, or a directory's entries.
///   Nothing else is durable: fsync of a file does not persist its name (fsync(2), NOTES), and fsync of a
///   directory does not persist the data of the files it names.
///
/// **Crash states** at a log position: the durable operations, plus, independently for each directory, any
/// *prefix* of its unsynced operations (a directory's changes reach the disk in order, but directories are
/// not ordered against each other or against file data), plus, independently for each file with unsynced
/// data, one of four fates: kept, dropped, zero-filled (the size reached the disk but the data did not) or
/// torn (half of the unsynced bytes). Every combination is produced, then deduplicated; unreachable inodes are
/// discarded. That includes "all unsynced dropped" and "all unsynced kept".
///
/// **Process crash (kill -9).** ``killAfter(effects:)`` makes every call fail, without effect, once that many more
/// operations were logged: the process is dead, the page cache is not. ``restart()`` then drops descriptors
/// and locks and bumps the pid; a new spool opened on the same instance continues the same log, so a later
/// power loss still loses whatever the dead process left unsynced.
///
/// **Removed fsync.** ``ignoreFsync(_:)`` turns matching fsync calls into no-ops that report success: the spool
/// with one fsync deleted, which the checker must catch.
///
/// Deterministic: descriptors, inode numbers, the pid and the clock (one microsecond per call) do not depend on
/// the machine, so the names the spool makes are the same in every run.
final class CrashFS: SpoolFileSystem {
    /// A file-system tree: what a disk holds after a crash, or what a new ``CrashFS`` starts from.
    struct Image: Hashable, Sendable {
        static let rootInode = 1
        /// Directory inodes: name → inode.
        var directories: [Int: [String: Int]] = [rootInode: [:]]
        /// File inodes: contents.
        var files: [Int: [UInt8]] = [:]

        /// An empty tree with the given directories (absolute paths, parents first).
        static func with(directories paths: [String]) -> Image {
            let fileSystem = CrashFS(image: Image())
            for path in paths {
                try? fileSystem.mkdir(path, mode: 0o755)
            }
            return fileSystem.currentImage
        }

        /// Drops the inodes that no entry reaches from the root.
        mutating func prune() {
            var reachable: Set<Int> = [Self.rootInode]
            var pending = [Self.rootInode]
            while let directory = pending.popLast() {
                for inode in directories[directory, default: [:]].values where reachable.insert(inode).inserted {
                    if directories[inode] != nil { pending.append(inode) }
                }
            }
            directories = directories.filter { reachable.contains($0.key) }
            files = files.filter { reachable.contains($0.key) }
        }
    }

    /// One logged operation.
    enum Effect: Sendable {
        case add(directory: Int, name: String, inode: Int)
        case remove(directory: Int, name: String)
        case rename(from: Int, fromName: String, to: Int, toName: String, inode: Int)
        case write(inode: Int, offset: Int, bytes: [UInt8])
        case truncate(inode: Int, length: Int)
        case sync(inode: Int)
        /// A marker from the test (an acknowledgement, a restart, …); no effect on the disk.
        case note(Note)

        var isNote: Bool {
            if case .note = self { true } else { false }
        }
    }

    /// What a test writes into the log between operations.
    enum Note: Sendable, Equatable {
        /// `store` returned this outcome: from here on the record must survive any crash.
        case acknowledged(id: String, fingerprint: String, outcome: SpoolOutcome)
        /// A consumer is about to take the record (rename new/ → cur/, then delete it).
        case consumerStarted(id: String)
        /// The consumer deleted the record and synced cur/: it has been delivered.
        case consumed(id: String)
        /// The process was killed and a new one starts.
        case restarted
        /// An fsync that ``ignoreFsync(_:)`` turned into a no-op.
        case ignoredFsync(path: String)
        case label(String)
    }

    struct LogEntry: Sendable, CustomStringConvertible {
        let effect: Effect
        let description: String
    }

    /// The fate of a file's unsynced data in a crash state.
    enum DataFate: String, CaseIterable, Sendable {
        case kept, dropped, zeroFilled = "zero-filled", torn
    }

    /// One state a crash may leave, with how it came about.
    struct CrashState: Sendable {
        let image: Image
        let description: String
    }

    private struct Descriptor {
        let inode: Int
        let path: String
        let writable: Bool
        var offset = 0
    }

    private struct State {
        var current: Image
        var nextInode: Int
        var descriptors: [CInt: Descriptor] = [:]
        var nextDescriptor: CInt = 3
        var locks: [Int: CInt] = [:]
        var log: [LogEntry] = []
        var generation = 0
        var clock: UInt64 = 0
        var effectsUntilDeath: Int?
        var dead = false
        var ignoredFsync: (@Sendable (String) -> Bool)?
        var capacity: Int?
        var maximumDescriptors = 256
    }

    static let blockSize = 4096
    /// Up to this many files with unsynced data, crash states combine every fate of each.
    static let maximumCombinedFiles = 3

    /// What the log started from; durable by definition.
    let base: Image
    /// Whether ``openUnnamed(inDirectory:mode:)`` makes unnamed files (O_TMPFILE) or throws `EOPNOTSUPP`.
    let unnamedFiles: Bool
    private let state: Mutex<State>

    init(image: Image, unnamedFiles: Bool = false) {
        base = image
        self.unnamedFiles = unnamedFiles
        let highest = max(image.directories.keys.max() ?? 0, image.files.keys.max() ?? 0)
        state = Mutex(State(current: image, nextInode: highest + 1))
    }

    // MARK: - Control

    /// Appends a marker to the log.
    func note(_ note: Note) {
        state.withLock { state in
            state.log.append(LogEntry(effect: .note(note), description: "\(note)"))
        }
    }

    /// Turns every fsync whose descriptor was opened with a path matching `matches` into a no-op that succeeds.
    func ignoreFsync(_ matches: @escaping @Sendable (String) -> Bool) {
        state.withLock { $0.ignoredFsync = matches }
    }

    /// Makes writes fail with ENOSPC once the files still linked or open would need more than `bytes`
    /// (counted in 4 KiB blocks, as tmpfs does).
    func limitCapacity(to bytes: Int?) {
        state.withLock { $0.capacity = bytes }
    }

    /// The process dies once `effects` more operations have been logged: from then on every call fails with
    /// EIO and changes nothing. nil: it does not die.
    func killAfter(effects: Int?) {
        state.withLock { state in
            state.effectsUntilDeath = effects
            state.dead = effects == 0
        }
    }

    var isDead: Bool {
        state.withLock { $0.dead }
    }

    /// A new process: descriptors and locks are gone, the pid changes, the page cache (the current tree and the
    /// unsynced log) stays.
    func restart() {
        state.withLock { state in
            state.dead = false
            state.effectsUntilDeath = nil
            state.descriptors = [:]
            state.locks = [:]
            state.generation += 1
            state.log.append(LogEntry(effect: .note(.restarted), description: "restart"))
        }
    }

    var log: [LogEntry] {
        state.withLock { $0.log }
    }

    /// What a process sees now (the page cache), not what a crash leaves.
    var currentImage: Image {
        state.withLock { $0.current }
    }

    // MARK: - Looking at the current tree (for checkers)

    func entries(_ path: String) -> [String: Int] {
        state.withLock { state in
            guard let inode = try? Self.resolve(path, in: state.current), let entries = state.current.directories[inode]
            else { return [:] }
            return entries
        }
    }

    func bytes(ofInode inode: Int) -> [UInt8]? {
        state.withLock { $0.current.files[inode] }
    }

    // MARK: - Crash states

    /// Numbers each distinct outcome of one directory (its entries) or one file (its bytes), so that a crash
    /// state is identified by a short key rather than by a whole tree: hashing and comparing trees was most of
    /// the enumeration's time. Share one between calls to deduplicate across crash points.
    final class OutcomeNumbers {
        private enum Outcome: Hashable {
            case directory(Int, [String: Int])
            case file(Int, [UInt8])
        }

        private var numbers: [Outcome: Int] = [:]

        func directory(_ inode: Int, _ entries: [String: Int]) -> Int {
            number(.directory(inode, entries))
        }

        func file(_ inode: Int, _ content: [UInt8]) -> Int {
            number(.file(inode, content))
        }

        private func number(_ outcome: Outcome) -> Int {
            if let known = numbers[outcome] { return known }
            numbers[outcome] = numbers.count
            return numbers.count - 1
        }
    }

    /// The distinct states a power loss right after the first `position` log entries may leave, with the number
    /// of combinations tried.
    func crashStates(at position: Int) -> (states: [CrashState], combinations: Int) {
        var seen: Set<[Int]> = []
        return crashStates(at: position, numbers: OutcomeNumbers()) { seen.insert($0).inserted }
    }

    /// The states a power loss right after the first `position` log entries may leave, with the number of
    /// combinations tried. `isNew` decides, from a state's key (the numbers of its directories' and files'
    /// outcomes), whether to produce it.
    func crashStates(
        at position: Int,
        numbers: OutcomeNumbers,
        isNew: (_ key: [Int]) -> Bool
    ) -> (states: [CrashState], combinations: Int) {
        let (log, current) = state.withLock { ($0.log, $0.current) }
        precondition(position >= 0 && position <= log.count)
        // Inodes created in the log start empty: a directory without entries, a file without data.
        var template = base
        var names: [Int: String] = [Image.rootInode: ""]
        var pending = [Image.rootInode]
        while let directory = pending.popLast() {
            for (entry, inode) in base.directories[directory] ?? [:] where names[inode] == nil {
                names[inode] = names[directory, default: ""] + "/" + entry
                if base.directories[inode] != nil { pending.append(inode) }
            }
        }
        func name(_ inode: Int) -> String {
            names[inode].map { $0.isEmpty ? "/" : $0 } ?? "inode \(inode)"
        }
        for index in 0..<position {
            guard case .add(let directory, let entry, let inode) = log[index].effect else { continue }
            if names[inode] == nil, let parent = names[directory] { names[inode] = parent + "/" + entry }
            if current.directories[inode] != nil {
                if template.directories[inode] == nil { template.directories[inode] = [:] }
            } else if template.files[inode] == nil {
                template.files[inode] = []
            }
        }
        var directoryOperations: [Int: [Int]] = [:]
        var dataOperations: [Int: [Int]] = [:]
        var lastSync: [Int: Int] = [:]
        for index in 0..<position {
            switch log[index].effect {
            case .add(let directory, _, _), .remove(let directory, _):
                directoryOperations[directory, default: []].append(index)
            case .rename(let from, _, let to, _, _):
                directoryOperations[from, default: []].append(index)
                if to != from { directoryOperations[to, default: []].append(index) }
            case .write(let inode, _, _), .truncate(let inode, _):
                dataOperations[inode, default: []].append(index)
            case .sync(let inode):
                lastSync[inode] = index
            case .note:
                break
            }
        }

        // Each directory: the distinct outcomes of keeping its durable operations plus a prefix of the others.
        struct DirectoryOutcome {
            let entries: [String: Int]
            let renames: Set<Int>
            let label: String
            let number: Int
        }
        var directoryChoices: [(inode: Int, outcomes: [DirectoryOutcome])] = []
        for (directory, operations) in directoryOperations.sorted(by: { $0.key < $1.key }) {
            let syncedBefore = lastSync[directory] ?? -1
            let durable = operations.prefix { $0 < syncedBefore }.count
            var entries = base.directories[directory] ?? [:]
            var renames: Set<Int> = []
            func apply(_ index: Int) {
                switch log[index].effect {
                case .add(_, let name, let inode):
                    entries[name] = inode
                case .remove(_, let name):
                    entries[name] = nil
                case .rename(let from, let fromName, let to, let toName, let inode):
                    if from == directory { entries[fromName] = nil }
                    if to == directory { entries[toName] = inode }
                    renames.insert(index)
                default:
                    break
                }
            }
            for index in operations.prefix(durable) { apply(index) }
            var outcomes: [DirectoryOutcome] = []
            var seen: Set<[String: Int]> = []
            let unsynced = operations.count - durable
            for kept in 0...unsynced {
                if kept > 0 { apply(operations[durable + kept - 1]) }
                // Identical entries reached by different prefixes only differ if a rename is involved.
                if renames.isEmpty, !seen.insert(entries).inserted { continue }
                outcomes.append(DirectoryOutcome(
                    entries: entries,
                    renames: renames,
                    label: unsynced == 0 ? "" : "\(name(directory))/: \(kept) of \(unsynced) unsynced kept",
                    number: numbers.directory(directory, entries)
                ))
            }
            directoryChoices.append((directory, outcomes))
        }

        // Each file: its durable data plus the fate of the unsynced part.
        typealias FileOutcome = (content: [UInt8], label: String, number: Int)
        var fileChoices: [(inode: Int, outcomes: [FileOutcome], byFate: [DataFate: Int])] = []
        for (inode, operations) in dataOperations.sorted(by: { $0.key < $1.key }) {
            // An unnamed file (O_TMPFILE) not linked anywhere yet: no crash state can reach it.
            guard template.files[inode] != nil else { continue }
            let syncedBefore = lastSync[inode] ?? -1
            let durable = operations.prefix { $0 < syncedBefore }.count
            var content = base.files[inode] ?? []
            for index in operations.prefix(durable) { Self.applyData(log[index].effect, to: &content, zeroed: false) }
            let unsynced = operations.dropFirst(durable)
            guard !unsynced.isEmpty else {
                fileChoices.append((inode, [(content, "", numbers.file(inode, content))], [:]))
                continue
            }
            var outcomes: [FileOutcome] = []
            var byFate: [DataFate: Int] = [:]
            for fate in DataFate.allCases {
                var result = content
                switch fate {
                case .dropped:
                    break
                case .kept, .torn:
                    for index in unsynced { Self.applyData(log[index].effect, to: &result, zeroed: false) }
                    if fate == .torn, result.count > content.count {
                        result = Array(result.prefix(content.count + (result.count - content.count) / 2))
                    }
                case .zeroFilled:
                    for index in unsynced { Self.applyData(log[index].effect, to: &result, zeroed: true) }
                }
                if let same = outcomes.firstIndex(where: { $0.content == result }) {
                    byFate[fate] = same
                } else {
                    byFate[fate] = outcomes.count
                    outcomes.append((result, "\(name(inode)): \(fate.rawValue)", numbers.file(inode, result)))
                }
            }
            fileChoices.append((inode, outcomes, byFate))
        }

        // Which directories each rename touches, to keep a rename atomic.
        var renameDirectories: [Int: (Int, Int)] = [:]
        for index in 0..<position {
            if case .rename(let from, _, let to, _, _) = log[index].effect, from != to {
                renameDirectories[index] = (from, to)
            }
        }

        // Every fate of every dirty file is combined while there are few of them (the spool leaves at most one
        // record file and the lock file unsynced). A spool that never syncs its files leaves many; then every
        // file shares one fate, or one file has its own fate while the others keep their data.
        let dirty = fileChoices.filter { $0.outcomes.count > 1 }
        var fateCombinations: [[Int]] = [[]]
        if dirty.count <= Self.maximumCombinedFiles {
            for choice in fileChoices {
                fateCombinations = fateCombinations.flatMap { prefix in
                    choice.outcomes.indices.map { prefix + [$0] }
                }
            }
        } else {
            // Outcome 0 is "kept" (the first fate tried), so [0, 0, …] keeps everything.
            var combined: Set<[Int]> = []
            for fate in DataFate.allCases {
                combined.insert(fileChoices.map { $0.byFate[fate] ?? 0 })
            }
            for (slot, choice) in fileChoices.enumerated() where choice.outcomes.count > 1 {
                for fate in choice.outcomes.indices {
                    var single = [Int](repeating: 0, count: fileChoices.count)
                    single[slot] = fate
                    combined.insert(single)
                }
            }
            fateCombinations = combined.sorted { $0.lexicographicallyPrecedes($1) }
        }

        var states: [CrashState] = []
        var combinations = 0
        let dimensions = directoryChoices.map(\.outcomes.count) + [fateCombinations.count]
        // For the reachability walk below: inodes are small numbers, so arrays indexed by inode are enough.
        let inodeCount = max(template.directories.keys.max() ?? 0, template.files.keys.max() ?? 0) + 1
        var directorySlot = [Int](repeating: -1, count: inodeCount)
        for (slot, choice) in directoryChoices.enumerated() { directorySlot[choice.inode] = slot }
        var fixedChildren = [[Int]](repeating: [], count: inodeCount)
        for (inode, entries) in template.directories { fixedChildren[inode] = Array(entries.values) }
        let outcomeChildren = directoryChoices.map { $0.outcomes.map { Array($0.entries.values) } }
        var odometer = [Int](repeating: 0, count: dimensions.count)
        while true {
            combinations += 1
            let fates = fateCombinations[odometer[directoryChoices.count]]
            let directoryOutcomes = directoryChoices.indices.map { directoryChoices[$0].outcomes[odometer[$0]] }
            let fileOutcomes = fileChoices.indices.map { fileChoices[$0].outcomes[fates[$0]] }
            var atomic = true
            if !renameDirectories.isEmpty {
                var applied: [Int: Set<Int>] = [:]
                for (slot, outcome) in directoryOutcomes.enumerated() where !outcome.renames.isEmpty {
                    applied[directoryChoices[slot].inode] = outcome.renames
                }
                atomic = renameDirectories.allSatisfy { index, pair in
                    applied[pair.0, default: []].contains(index) == applied[pair.1, default: []].contains(index)
                }
            }
            // The key covers what is reachable from the root, as the pruned tree does: a tmp/ file whose name did
            // not survive makes no difference, whatever happened to its data.
            var reachable = [Bool](repeating: false, count: inodeCount)
            reachable[Image.rootInode] = true
            var pending = [Image.rootInode]
            while atomic, let directory = pending.popLast() {
                let slot = directorySlot[directory]
                for inode in slot >= 0 ? outcomeChildren[slot][odometer[slot]] : fixedChildren[directory]
                where inode < inodeCount && !reachable[inode] {
                    reachable[inode] = true
                    if template.directories[inode] != nil { pending.append(inode) }
                }
            }
            var key: [Int] = []
            for (slot, outcome) in directoryOutcomes.enumerated() where reachable[directoryChoices[slot].inode] {
                key.append(outcome.number)
            }
            for (slot, outcome) in fileOutcomes.enumerated() where reachable[fileChoices[slot].inode] {
                key.append(outcome.number)
            }
            if atomic, isNew(key) {
                var image = template
                var labels: [String] = []
                for (slot, outcome) in directoryOutcomes.enumerated() {
                    image.directories[directoryChoices[slot].inode] = outcome.entries
                    if !outcome.label.isEmpty { labels.append(outcome.label) }
                }
                for (slot, outcome) in fileOutcomes.enumerated() {
                    image.files[fileChoices[slot].inode] = outcome.content
                    if !outcome.label.isEmpty { labels.append(outcome.label) }
                }
                image.prune()
                let point = position == 0 ? "at the start" : "after #\(position - 1) \(log[position - 1])"
                let how = labels.isEmpty ? "nothing unsynced" : labels.joined(separator: ", ")
                states.append(CrashState(image: image, description: "crash \(point) [\(how)]"))
            }
            // Next combination.
            var slot = 0
            while slot < odometer.count {
                odometer[slot] += 1
                if odometer[slot] < dimensions[slot] { break }
                odometer[slot] = 0
                slot += 1
            }
            if slot == odometer.count { break }
        }
        return (states, combinations)
    }

    private static func applyData(_ effect: Effect, to content: inout [UInt8], zeroed: Bool) {
        switch effect {
        case .write(_, let offset, let bytes):
            if offset == content.count {
                content.append(contentsOf: zeroed ? [UInt8](repeating: 0, count: bytes.count) : bytes)
                return
            }
            if content.count < offset + bytes.count {
                content.append(contentsOf: repeatElement(0, count: offset + bytes.count - content.count))
            }
            content.replaceSubrange(
                offset..<(offset + bytes.count),
                with: zeroed ? [UInt8](repeating: 0, count: bytes.count) : bytes
            )
        case .truncate(_, let length):
            if length < content.count {
                content.removeLast(content.count - length)
            } else {
                content.append(contentsOf: repeatElement(0, count: length - content.count))
            }
        default:
            break
        }
    }

    // MARK: - Paths

    /// The spool uses a few hundred distinct paths, the same in every replayed state; splitting each one once
    /// keeps the enumeration fast in debug builds.
    private static let componentCache = Mutex<[String: [String]]>([:])

    private static func components(_ path: String) -> [String] {
        if let cached = componentCache.withLock({ $0[path] }) { return cached }
        let parts = path.utf8.split(separator: UInt8(ascii: "/")).map { String(decoding: $0, as: UTF8.self) }
        componentCache.withLock { $0[path] = parts }
        return parts
    }

    private static func resolve(_ path: String, in image: Image) throws(SpoolErrno) -> Int {
        var inode = Image.rootInode
        for component in components(path) {
            guard let entries = image.directories[inode] else { throw SpoolErrno(ENOTDIR) }
            guard let next = entries[component] else { throw SpoolErrno(ENOENT) }
            inode = next
        }
        return inode
    }

    /// The directory holding the last component, and that component.
    private static func parent(_ path: String, in image: Image) throws(SpoolErrno) -> (directory: Int, name: String) {
        var parts = components(path)
        guard let name = parts.popLast() else { throw SpoolErrno(EEXIST) }
        let directory = try resolve(parts.joined(separator: "/"), in: image)
        guard image.directories[directory] != nil else { throw SpoolErrno(ENOTDIR) }
        return (directory, name)
    }

    // MARK: - Calls

    /// Runs a call under the lock, failing it without effect once the process is dead.
    private func call<T>(_ body: (inout State) throws(SpoolErrno) -> T) throws(SpoolErrno) -> T {
        try state.withLock { (state: inout State) throws(SpoolErrno) -> T in
            if state.dead { throw SpoolErrno(EIO) }
            return try body(&state)
        }
    }

    private static func log(_ effect: Effect, _ description: String, _ state: inout State) {
        state.log.append(LogEntry(effect: effect, description: description))
        if let remaining = state.effectsUntilDeath {
            state.effectsUntilDeath = remaining - 1
            if remaining - 1 <= 0 { state.dead = true }
        }
    }

    private static func usedBytes(_ state: State) -> Int {
        var live: Set<Int> = Set(state.descriptors.values.map(\.inode))
        for entries in state.current.directories.values { live.formUnion(entries.values) }
        return live.reduce(0) { total, inode in
            guard let content = state.current.files[inode] else { return total }
            return total + (content.count + blockSize - 1) / blockSize * blockSize
        }
    }

    func open(_ path: String, flags: CInt, mode: mode_t) throws(SpoolErrno) -> CInt {
        try call { (state: inout State) throws(SpoolErrno) -> CInt in
            guard state.descriptors.count < state.maximumDescriptors else { throw SpoolErrno(EMFILE) }
            let access = flags & O_ACCMODE
            let writable = access == O_WRONLY || access == O_RDWR
            var found: Int?
            do throws(SpoolErrno) {
                found = try Self.resolve(path, in: state.current)
            } catch where error.rawValue == ENOENT && flags & O_CREAT != 0 {
                found = nil
            }
            if found != nil, flags & O_CREAT != 0, flags & O_EXCL != 0 { throw SpoolErrno(EEXIST) }
            let inode: Int
            if let found {
                inode = found
            } else {
                let (directory, name) = try Self.parent(path, in: state.current)
                inode = state.nextInode
                state.nextInode += 1
                state.current.files[inode] = []
                state.current.directories[directory, default: [:]][name] = inode
                Self.log(.add(directory: directory, name: name, inode: inode), "create \(path)", &state)
            }
            let isDirectory = state.current.directories[inode] != nil
            if isDirectory, writable { throw SpoolErrno(EISDIR) }
            if !isDirectory, flags & O_DIRECTORY != 0 { throw SpoolErrno(ENOTDIR) }
            if flags & O_TRUNC != 0, writable, !(state.current.files[inode]?.isEmpty ?? true) {
                state.current.files[inode] = []
                Self.log(.truncate(inode: inode, length: 0), "truncate \(path)", &state)
            }
            let fd = state.nextDescriptor
            state.nextDescriptor += 1
            state.descriptors[fd] = Descriptor(inode: inode, path: path, writable: writable)
            return fd
        }
    }

    func write(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws(SpoolErrno) -> Int {
        try call { (state: inout State) throws(SpoolErrno) -> Int in
            guard var descriptor = state.descriptors[fd], descriptor.writable,
                  var content = state.current.files[descriptor.inode]
            else { throw SpoolErrno(EBADF) }
            guard bytes.count > 0 else { return 0 }
            if let capacity = state.capacity {
                let grown = max(content.count, descriptor.offset + bytes.count)
                let blocks = { (size: Int) in (size + Self.blockSize - 1) / Self.blockSize * Self.blockSize }
                if Self.usedBytes(state) - blocks(content.count) + blocks(grown) > capacity {
                    throw SpoolErrno(ENOSPC)
                }
            }
            let written = Array(bytes)
            let effect = Effect.write(inode: descriptor.inode, offset: descriptor.offset, bytes: written)
            Self.applyData(effect, to: &content, zeroed: false)
            state.current.files[descriptor.inode] = content
            descriptor.offset += written.count
            state.descriptors[fd] = descriptor
            Self.log(effect, "write \(descriptor.path) (\(written.count) bytes)", &state)
            return written.count
        }
    }

    func fsync(_ fd: CInt) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            guard let descriptor = state.descriptors[fd] else { throw SpoolErrno(EBADF) }
            if let ignored = state.ignoredFsync, ignored(descriptor.path) {
                state.log.append(LogEntry(
                    effect: .note(.ignoredFsync(path: descriptor.path)),
                    description: "fsync \(descriptor.path) (ignored)"
                ))
                return
            }
            Self.log(.sync(inode: descriptor.inode), "fsync \(descriptor.path)", &state)
        }
    }

    func truncate(_ fd: CInt, length: Int64) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            guard let descriptor = state.descriptors[fd], descriptor.writable,
                  var content = state.current.files[descriptor.inode]
            else { throw SpoolErrno(EBADF) }
            let effect = Effect.truncate(inode: descriptor.inode, length: Int(length))
            Self.applyData(effect, to: &content, zeroed: false)
            state.current.files[descriptor.inode] = content
            Self.log(effect, "ftruncate \(descriptor.path) to \(length)", &state)
        }
    }

    func close(_ fd: CInt) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            guard let descriptor = state.descriptors.removeValue(forKey: fd) else { throw SpoolErrno(EBADF) }
            if state.locks[descriptor.inode] == fd { state.locks[descriptor.inode] = nil }
        }
    }

    func flock(_ fd: CInt, operation: CInt) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            guard let descriptor = state.descriptors[fd] else { throw SpoolErrno(EBADF) }
            if operation & LOCK_UN != 0 {
                if state.locks[descriptor.inode] == fd { state.locks[descriptor.inode] = nil }
                return
            }
            if let holder = state.locks[descriptor.inode], holder != fd { throw SpoolErrno(EWOULDBLOCK) }
            state.locks[descriptor.inode] = fd
        }
    }

    /// An unnamed file is an inode no directory names: nothing is logged until it is linked, and a crash state
    /// before that has no way to reach it (``Image/prune()``), which is O_TMPFILE's promise. Its writes and
    /// fsyncs are logged against its inode like any file's.
    func openUnnamed(inDirectory path: String, mode: mode_t) throws(SpoolErrno) -> CInt {
        guard unnamedFiles else { throw SpoolErrno(EOPNOTSUPP) }
        return try call { (state: inout State) throws(SpoolErrno) -> CInt in
            guard state.descriptors.count < state.maximumDescriptors else { throw SpoolErrno(EMFILE) }
            let directory = try Self.resolve(path, in: state.current)
            guard state.current.directories[directory] != nil else { throw SpoolErrno(ENOTDIR) }
            let inode = state.nextInode
            state.nextInode += 1
            state.current.files[inode] = []
            let fd = state.nextDescriptor
            state.nextDescriptor += 1
            state.descriptors[fd] = Descriptor(inode: inode, path: "\(path)/#unnamed\(inode)", writable: true)
            return fd
        }
    }

    func link(descriptor fd: CInt, _ newPath: String) throws(SpoolErrno) {
        guard unnamedFiles else { throw SpoolErrno(EOPNOTSUPP) }
        try call { (state: inout State) throws(SpoolErrno) in
            guard let descriptor = state.descriptors[fd] else { throw SpoolErrno(EBADF) }
            let (directory, name) = try Self.parent(newPath, in: state.current)
            guard state.current.directories[directory]?[name] == nil else { throw SpoolErrno(EEXIST) }
            state.current.directories[directory]?[name] = descriptor.inode
            Self.log(
                .add(directory: directory, name: name, inode: descriptor.inode),
                "link \(descriptor.path) -> \(newPath)", &state
            )
        }
    }

    func link(_ existing: String, _ newPath: String) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            let inode = try Self.resolve(existing, in: state.current)
            guard state.current.directories[inode] == nil else { throw SpoolErrno(EPERM) }
            let (directory, name) = try Self.parent(newPath, in: state.current)
            guard state.current.directories[directory]?[name] == nil else { throw SpoolErrno(EEXIST) }
            state.current.directories[directory]?[name] = inode
            Self.log(.add(directory: directory, name: name, inode: inode), "link \(existing) -> \(newPath)", &state)
        }
    }

    func rename(_ oldPath: String, _ newPath: String) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            let (from, fromName) = try Self.parent(oldPath, in: state.current)
            guard let inode = state.current.directories[from]?[fromName] else { throw SpoolErrno(ENOENT) }
            let (to, toName) = try Self.parent(newPath, in: state.current)
            if from == to, fromName == toName { return }
            if let replaced = state.current.directories[to]?[toName], state.current.directories[replaced] != nil {
                throw SpoolErrno(EISDIR)
            }
            state.current.directories[from]?[fromName] = nil
            state.current.directories[to]?[toName] = inode
            Self.log(
                .rename(from: from, fromName: fromName, to: to, toName: toName, inode: inode),
                "rename \(oldPath) -> \(newPath)",
                &state
            )
        }
    }

    func unlink(_ path: String) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            let (directory, name) = try Self.parent(path, in: state.current)
            guard let inode = state.current.directories[directory]?[name] else { throw SpoolErrno(ENOENT) }
            guard state.current.directories[inode] == nil else { throw SpoolErrno(EISDIR) }
            state.current.directories[directory]?[name] = nil
            Self.log(.remove(directory: directory, name: name), "unlink \(path)", &state)
        }
    }

    func mkdir(_ path: String, mode: mode_t) throws(SpoolErrno) {
        try call { (state: inout State) throws(SpoolErrno) in
            let (directory, name) = try Self.parent(path, in: state.current)
            guard state.current.directories[directory]?[name] == nil else { throw SpoolErrno(EEXIST) }
            let inode = state.nextInode
            state.nextInode += 1
            state.current.directories[inode] = [:]
            state.current.directories[directory]?[name] = inode
            Self.log(.add(directory: directory, name: name, inode: inode), "mkdir \(path)", &state)
        }
    }

    func readDirectory(_ path: String) throws(SpoolErrno) -> [String] {
        try call { (state: inout State) throws(SpoolErrno) -> [String] in
            let inode = try Self.resolve(path, in: state.current)
            guard let entries = state.current.directories[inode] else { throw SpoolErrno(ENOTDIR) }
            return Array(entries.keys)
        }
    }

    func readFile(_ path: String) throws(SpoolErrno) -> [UInt8] {
        try call { (state: inout State) throws(SpoolErrno) -> [UInt8] in
            let inode = try Self.resolve(path, in: state.current)
            guard let content = state.current.files[inode] else { throw SpoolErrno(EISDIR) }
            return content
        }
    }

    func stat(_ path: String) throws(SpoolErrno) -> SpoolFileStatus {
        try call { (state: inout State) throws(SpoolErrno) -> SpoolFileStatus in
            let inode = try Self.resolve(path, in: state.current)
            let links = state.current.directories.values.reduce(0) { count, entries in
                count + entries.values.filter { $0 == inode }.count
            }
            if let content = state.current.files[inode] {
                return SpoolFileStatus(
                    device: 1, inode: UInt64(inode), linkCount: UInt64(links), size: Int64(content.count), kind: .regular
                )
            }
            return SpoolFileStatus(device: 1, inode: UInt64(inode), linkCount: UInt64(links + 1), size: 4096, kind: .directory)
        }
    }

    func processID() -> CInt {
        state.withLock { 1000 + CInt($0.generation) }
    }

    func currentTimeMicroseconds() -> UInt64 {
        state.withLock { state in
            state.clock += 1
            return 1_700_000_000_000_000 + state.clock
        }
    }

    func availableBytes(_ path: String) throws(SpoolErrno) -> UInt64 {
        try call { (state: inout State) throws(SpoolErrno) -> UInt64 in
            guard let capacity = state.capacity else { return 1 << 40 }
            return UInt64(max(0, capacity - Self.usedBytes(state)))
        }
    }
}

extension CrashFS.LogEntry {
    var isNote: Bool { effect.isNote }
}
