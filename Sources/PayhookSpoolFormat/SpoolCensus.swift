import Glibc

/// What `/metrics` says about a spool's folders at one moment: how many events wait, are taken or are dead
/// letters, how many conflict copies and quarantined files there are, and when the oldest waiting and the oldest
/// taken event were written. The server's `/metrics` and `payhook queue consume --metrics-listen` read it, at
/// scrape time (docs/metrics.md).
public struct SpoolCensus: Sendable, Equatable {
    /// The folders counted, every one in ``counts`` whether or not it exists yet (the queue tools create dead/
    /// when they first need it).
    public static let folders = ["new", "cur", "dead", "conflicts", "corrupt"]
    /// The folders whose oldest event is dated.
    public static let datedFolders = ["new", "cur"]

    /// By folder: in new/, cur/ and dead/ the events (entries named `<id>.json`; a dead letter's
    /// `<id>.error.json` is its record, not another event), in conflicts/ and corrupt/ the files (dot names
    /// excluded). A folder that does not exist counts 0; one that cannot be listed (EACCES, EIO) is left out.
    public var counts: [String: Int] = [:]
    /// By folder of ``datedFolders`` that holds an event: the modification time, in Unix seconds, of its oldest
    /// event file. The server sets it when it writes the event, within milliseconds of the event's `received_at`,
    /// and neither link(2) nor rename(2) changes it, so a take, a nack, a requeue or a revive keeps it
    /// (docs/consumers.md, `requeue`).
    public var oldestWritten: [String: Double] = [:]

    public init(counts: [String: Int] = [:], oldestWritten: [String: Double] = [:]) {
        self.counts = counts
        self.oldestWritten = oldestWritten
    }

    /// Reads the folders of the spool at `root`. It costs one pass of readdir(3) over each folder and, in new/
    /// and cur/, one fstatat(2) per event file, nothing more: no file is opened or read. (On a warm cache about
    /// 1 µs per file; the caller decides how often to pay it.)
    public static func take(_ root: String) -> SpoolCensus {
        var census = SpoolCensus()
        for folder in folders {
            switch scan(root + "/" + folder, dated: datedFolders.contains(folder), eventsOnly: SpoolFormat.eventFolders.contains(folder)) {
            case .missing:
                census.counts[folder] = 0
            case .unreadable:
                continue
            case .scanned(let count, let oldest):
                census.counts[folder] = count
                if let oldest { census.oldestWritten[folder] = oldest }
            }
        }
        return census
    }

    private enum FolderScan {
        case missing
        case unreadable
        case scanned(count: Int, oldest: Double?)
    }

    private static func scan(_ path: String, dated: Bool, eventsOnly: Bool) -> FolderScan {
        guard let handle = opendir(path) else { return errno == ENOENT || errno == ENOTDIR ? .missing : .unreadable }
        defer { closedir(handle) }
        let descriptor = dirfd(handle)
        var count = 0
        var oldest: Double?
        while true {
            errno = 0
            guard let entry = readdir(handle) else {
                return errno == 0 ? .scanned(count: count, oldest: oldest) : .unreadable
            }
            let counted = withUnsafeBytes(of: &entry.pointee.d_name) { raw -> Bool in
                let name = UnsafeRawBufferPointer(rebasing: raw[..<(raw.firstIndex(of: 0) ?? raw.count)])
                guard name.first != UInt8(ascii: ".") else { return false }  // ".", "..", dot names
                guard !eventsOnly || isEventFileName(name) else { return false }
                guard dated else { return true }
                var status = stat()
                // The name is NUL-terminated inside d_name.
                let found = fstatat(descriptor, raw.baseAddress!.assumingMemoryBound(to: CChar.self), &status, AT_SYMLINK_NOFOLLOW) == 0
                if found {
                    let written = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
                    if oldest.map({ written < $0 }) ?? true { oldest = written }
                }
                // Gone since readdir: a consumer took or acknowledged it meanwhile.
                return found
            }
            if counted { count += 1 }
        }
    }

    /// `<64 lowercase hex>.json` (``EventID``), on the raw bytes, so that a scan of a large folder makes no
    /// strings.
    static func isEventFileName(_ name: UnsafeRawBufferPointer) -> Bool {
        guard name.count == EventID.length + 5 else { return false }
        for index in 0..<EventID.length {
            switch name[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): continue
            default: return false
            }
        }
        return name[EventID.length...].elementsEqual(".json".utf8)
    }
}
