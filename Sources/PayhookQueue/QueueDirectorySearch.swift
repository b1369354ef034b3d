import Foundation
import Glibc
import PayhookSpoolFormat
public import PayhookStore

extension QueueDirectory {
    /// Every event and conflict copy of the spool that passes `query` (``EventQueue/search(_:)``):
    /// - new/, cur/ and dead/ as `list` reads them (a file that is no valid event is moved to corrupt/);
    /// - acknowledged events: entries of the ledger `ids/<id>` (a hard link to the event's bytes) whose event is in
    ///   none of new/, cur/ and dead/. An event still queued is there too, and is reported once, where it is
    ///   queued;
    /// - conflict copies, the files `conflicts/<id>.<tag>.json` the server wrote (``QueueReference/conflictCopy(named:)``),
    ///   each with where the event of its id is now.
    /// Ledger entries and conflict copies are read as the queue reads events (no link followed, nothing over
    /// 16 MiB, the strict definition of `EventFile`) and are never moved: one that is not a valid event is
    /// reported in `skipped` and left alone. Finding an order's events reads every file of the places searched,
    /// the ledger included; with `ids` only those ids' files are read.
    public func search(_ query: QueueSearch) throws(QueueError) -> QueueSearchResult {
        var search = Search(directory: self, query: query)
        try search.queued()
        if query.places.contains(.acknowledged) { try search.acknowledged() }
        if query.places.contains(.conflicts) { try search.conflicts() }
        search.result.items.sort(by: QueueStoredEvent.precedes)
        return search.result
    }

    /// The ids of events in new/, cur/, dead/ and the ledger, and of conflict copies, that start with `prefix`;
    /// sorted, at most `limit`. Only names are read.
    public func ids(startingWith prefix: String, limit: Int) throws(QueueError) -> [String] {
        var found = Set<String>()
        for location in QueueLocation.allCases {
            for (id, _) in try scan(location.rawValue) where id.hasPrefix(prefix) { found.insert(id) }
        }
        for id in try ledgerIDs() where id.hasPrefix(prefix) { found.insert(id) }
        for copy in try conflictNames() where copy.id.hasPrefix(prefix) { found.insert(copy.id) }
        return Array(found.sorted().prefix(max(0, limit)))
    }

    /// The ids the ledger holds: the names in ids/ that are event ids.
    func ledgerIDs() throws(QueueError) -> [String] {
        try names(in: "ids").filter(EventID.isValid)
    }

    /// The conflict copies in conflicts/ by name, with the id each is a copy of. Other names there are not
    /// copies the server wrote, and are left out.
    func conflictNames() throws(QueueError) -> [(name: String, id: String)] {
        try names(in: "conflicts").compactMap { name in
            QueueReference.conflictCopy(named: name).map { (name, $0.id) }
        }
    }

    /// The UTF-8 names in a folder, dotfiles aside; none when the folder is missing.
    private func names(in folder: String) throws(QueueError) -> [String] {
        do {
            return try SpoolPosix.readDirectory(path(folder)).compactMap { entry in
                entry.name.isHidden ? nil : entry.name.string
            }
        } catch {
            if error.code == ENOENT { return [] }
            throw .io("read directory", folder + "/", error.code)
        }
    }

    /// Reads a ledger entry or conflict copy as an event without ever moving it: nil when it is gone, or when it
    /// is not an event (then noted in `skipped`).
    fileprivate func readKept(
        _ relative: String, expectedID: String, into result: inout QueueSearchResult
    ) throws(QueueError) -> (file: EventFile, bytes: [UInt8])? {
        guard let content = try readRegularFile(relative) else { return nil }
        switch content {
        case .refused(let reason):
            result.skipped.append(QueueSkipped(path: relative, reason: reason))
            return nil
        case .bytes(let bytes):
            do {
                let file = try EventFile.parse(bytes)
                guard SpoolBytes.same(file.id, expectedID) else {
                    result.skipped.append(
                        QueueSkipped(path: relative, reason: "its id \(EventID.quoted(file.id)) is not the one its name says"))
                    return nil
                }
                return (file, bytes)
            } catch {
                result.skipped.append(QueueSkipped(path: relative, reason: error.reason))
                return nil
            }
        }
    }
}

/// One search of the spool: what it found so far, and where each id it met is queued.
private struct Search {
    let directory: QueueDirectory
    let query: QueueSearch
    var result = QueueSearchResult()
    /// Where each id seen in new/, cur/ or dead/ is (read or only listed).
    var queuedAt: [String: QueueLocation] = [:]

    init(directory: QueueDirectory, query: QueueSearch) {
        self.directory = directory
        self.query = query
    }

    /// new/, cur/ and dead/: the events in the places searched, read; in the others only listed, when the
    /// ledger or conflicts/ are searched too and need to know what is still queued.
    mutating func queued() throws(QueueError) {
        let needPresence = query.places.contains(.acknowledged) || query.places.contains(.conflicts)
        for location in QueueLocation.allCases {
            let wanted = query.places.contains(QueuePlace(location))
            guard wanted || needPresence else { continue }
            let ids: [String]
            if let only = query.ids {
                ids = only.sorted()
            } else {
                ids = try directory.scan(location.rawValue).map(\.id)
            }
            for id in ids {
                if !wanted {
                    if query.ids == nil || (try? SpoolPosix.status(directory.eventPath(id, in: location))) != nil {
                        queuedAt[id] = location
                    }
                    continue
                }
                // A file moved by a consumer between readdir and read is not listed here; the ledger pass looks
                // again before it calls an event acknowledged.
                guard let entry = try directory.read(id, in: location, quarantined: &result.quarantined) else { continue }
                queuedAt[id] = location
                if query.admits(entry.event) { add(QueueStoredEvent(entry)) }
            }
        }
    }

    mutating func add(_ item: QueueStoredEvent) {
        if query.includeBytes {
            result.items.append(item)
        } else {
            result.items.append(
                QueueStoredEvent(
                    event: item.event.withoutBytes(), place: item.place, path: item.path, record: item.record,
                    acknowledgedAt: item.acknowledgedAt, conflictName: item.conflictName, conflictsWith: item.conflictsWith))
        }
    }

    /// The ledger's entries whose event is in none of new/, cur/ and dead/.
    mutating func acknowledged() throws(QueueError) {
        let ids: [String]
        if let only = query.ids {
            ids = only.sorted()
        } else {
            ids = try directory.ledgerIDs()
        }
        for id in ids where queuedAt[id] == nil && EventID.isValid(id) {
            // Not seen queued: look once more, since a consumer may have moved it (a nack from cur/ back to new/
            // after new/ was listed) between the listings. Only an event found nowhere is acknowledged.
            if let location = directory.location(of: id) {
                queuedAt[id] = location
                guard query.places.contains(QueuePlace(location)), !contains(id, at: QueuePlace(location)),
                    let entry = try directory.read(id, in: location, quarantined: &result.quarantined)
                else { continue }
                if query.admits(entry.event) { add(QueueStoredEvent(entry)) }
                continue
            }
            guard let kept = try directory.readKept("ids/\(id)", expectedID: id, into: &result) else { continue }
            let event = QueueEvent(kept.file, bytes: query.includeBytes ? kept.bytes : [])
            guard query.admits(event) else { continue }
            result.items.append(QueueStoredEvent(event: event, place: .acknowledged, path: directory.path("ids/\(id)")))
        }
    }

    func contains(_ id: String, at place: QueuePlace) -> Bool {
        result.items.contains { $0.id == id && $0.place == place }
    }

    /// The copies in conflicts/, each with where its id's event is now.
    mutating func conflicts() throws(QueueError) {
        var counterparts: [String: QueuePlace?] = [:]
        for (name, id) in try directory.conflictNames() where query.ids?.contains(id) ?? true {
            guard let kept = try directory.readKept("conflicts/\(name)", expectedID: id, into: &result) else { continue }
            let event = QueueEvent(kept.file, bytes: query.includeBytes ? kept.bytes : [])
            guard query.admits(event) else { continue }
            let counterpart: QueuePlace?
            if let known = counterparts[id] {
                counterpart = known
            } else {
                counterpart = place(of: id)
                counterparts[id] = counterpart
            }
            result.items.append(
                QueueStoredEvent(
                    event: event, place: .conflicts, path: directory.path("conflicts/\(name)"), conflictName: name,
                    conflictsWith: counterpart))
        }
    }

    /// Where the event `id` is now: queued, acknowledged (only the ledger has it), or nowhere.
    func place(of id: String) -> QueuePlace? {
        if let location = queuedAt[id] ?? directory.location(of: id) {
            return QueuePlace(location)
        }
        return (try? SpoolPosix.status(directory.path("ids/\(id)"))) != nil ? .acknowledged : nil
    }
}
