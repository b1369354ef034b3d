// The mutable table tree built while parsing, and the TOML 1.0 rules about which tables
// may be defined or extended by which syntax. It is frozen into `TOMLTable` at the end.

/// One part of a (possibly dotted) key, with where it was written.
struct TOMLKeyPart {
    let name: String
    let position: TOMLSourcePosition
}

/// A 1-based line and column.
struct TOMLSourcePosition: Equatable {
    var line: Int
    var column: Int
}

/// A table under construction.
final class TOMLTableBuilder {
    /// How a table came to exist; this decides what may still add to it.
    enum Origin {
        /// The document root, or the top of an inline table.
        case root
        /// Implied by a longer header such as `[a.b]` implying `a`. TOML 1.0 §Table: it may still
        /// be defined later by its own `[a]` header.
        case implicit
        /// Defined by a `[header]`, or an element of an array of tables.
        case header
        /// Created (or taken over) by dotted keys such as `a.b = 1`.
        case dotted
    }

    enum Item {
        /// A finished value: scalar, static array or inline table. None of these can be
        /// extended later (TOML 1.0 §Inline Table, §Array of Tables).
        case value(TOMLNode)
        case table(TOMLTableBuilder)
        case tableArray(TOMLTableArrayBuilder)
    }

    struct Slot {
        let key: String
        var keyLine: Int
        var item: Item
    }

    var line: Int
    var origin: Origin
    private(set) var slots: [Slot] = []
    private var slotIndex: [String: Int] = [:]

    init(line: Int, origin: Origin) {
        self.line = line
        self.origin = origin
    }

    func index(of key: String) -> Int? {
        slotIndex[key]
    }

    func append(_ slot: Slot) {
        slotIndex[slot.key] = slots.count
        slots.append(slot)
    }

    func setKeyLine(_ line: Int, at index: Int) {
        slots[index].keyLine = line
    }

    /// The immutable form. Recursion depth is bounded by `TOML.maximumDepth`.
    func frozen() -> TOMLTable {
        let entries = slots.map { slot -> TOMLEntry in
            let node: TOMLNode
            switch slot.item {
            case .value(let value):
                node = value
            case .table(let table):
                node = TOMLNode(value: .table(table.frozen()), line: table.line)
            case .tableArray(let array):
                let elements = array.tables.map { TOMLNode(value: .table($0.frozen()), line: $0.line) }
                node = TOMLNode(value: .array(elements), line: array.line)
            }
            return TOMLEntry(key: slot.key, keyLine: slot.keyLine, node: node)
        }
        return TOMLTable(line: line, entries: entries)
    }
}

/// An array of tables under construction, created by `[[header]]` sections.
final class TOMLTableArrayBuilder {
    let line: Int
    var tables: [TOMLTableBuilder]

    init(line: Int, first: TOMLTableBuilder) {
        self.line = line
        self.tables = [first]
    }
}

/// The TOML 1.0 rules for placing headers and keys into the tree.
enum TOMLTree {
    /// Handles `[a.b.c]`: returns the table that the following key/value lines fill.
    static func defineTable(
        _ key: [TOMLKeyPart], line: Int, root: TOMLTableBuilder
    ) throws(TOMLError) -> TOMLTableBuilder {
        let parent = try headerParent(key, line: line, root: root)
        let last = key.count - 1
        let part = key[last]
        guard let index = parent.index(of: part.name) else {
            let table = TOMLTableBuilder(line: line, origin: .header)
            parent.append(.init(key: part.name, keyLine: line, item: .table(table)))
            return table
        }
        let slot = parent.slots[index]
        let name = display(key[...last])
        switch slot.item {
        case .table(let table):
            switch table.origin {
            case .implicit:
                // TOML 1.0 §Table: a table implied by an earlier `[a.b]` may be defined once by `[a]`.
                table.origin = .header
                table.line = line
                parent.setKeyLine(line, at: index)
                return table
            case .dotted:
                // TOML 1.0 §Table: tables made by dotted keys cannot be re-opened with a header.
                throw failure("table '\(name)' is already defined by dotted keys on line \(slot.keyLine)", at: part)
            case .header, .root:
                throw failure("table '\(name)' is already defined on line \(slot.keyLine)", at: part)
            }
        case .tableArray:
            throw failure("table '\(name)' is already defined as an array of tables on line \(slot.keyLine)", at: part)
        case .value(let node):
            throw valueConflict(node, name: name, keyLine: slot.keyLine, at: part)
        }
    }

    /// Handles `[[a.b.c]]`: appends a new table to the array and returns it.
    static func appendArrayTable(
        _ key: [TOMLKeyPart], line: Int, root: TOMLTableBuilder
    ) throws(TOMLError) -> TOMLTableBuilder {
        let parent = try headerParent(key, line: line, root: root)
        let last = key.count - 1
        let part = key[last]
        let element = TOMLTableBuilder(line: line, origin: .header)
        guard let index = parent.index(of: part.name) else {
            let array = TOMLTableArrayBuilder(line: line, first: element)
            parent.append(.init(key: part.name, keyLine: line, item: .tableArray(array)))
            return element
        }
        let slot = parent.slots[index]
        let name = display(key[...last])
        switch slot.item {
        case .tableArray(let array):
            array.tables.append(element)
            return element
        case .table:
            throw failure("'\(name)' is already defined as a table on line \(slot.keyLine)", at: part)
        case .value(let node):
            // TOML 1.0 §Array of Tables: a statically defined array cannot be appended to.
            if case .array = node.value {
                throw failure("cannot append to static array '\(name)' defined on line \(slot.keyLine)", at: part)
            }
            throw valueConflict(node, name: name, keyLine: slot.keyLine, at: part)
        }
    }

    /// For `a.b.c = value` inside `table`: returns the table that receives `c`, creating
    /// `a` and `b` as needed, after checking that `c` is not already defined.
    static func parentForKeyValue(
        _ key: [TOMLKeyPart], in table: TOMLTableBuilder
    ) throws(TOMLError) -> TOMLTableBuilder {
        var current = table
        for position in key.indices {
            let part = key[position]
            let index = current.index(of: part.name)
            if position == key.count - 1 {
                if let index {
                    let name = display(key[...position])
                    let firstLine = current.slots[index].keyLine
                    throw failure("duplicate key '\(name)' (first defined on line \(firstLine))", at: part)
                }
                return current
            }
            guard let index else {
                let created = TOMLTableBuilder(line: part.position.line, origin: .dotted)
                current.append(.init(key: part.name, keyLine: part.position.line, item: .table(created)))
                current = created
                continue
            }
            let slot = current.slots[index]
            let name = display(key[...position])
            switch slot.item {
            case .table(let next):
                switch next.origin {
                case .dotted:
                    current = next
                case .implicit:
                    // Dotted keys define the implied table; a later `[header]` for it is then
                    // a redefinition (TOML 1.0 §Table, "Defining a table more than once").
                    next.origin = .dotted
                    current = next
                case .header, .root:
                    // TOML 1.0 §Table: a table defined by a header cannot gain keys through dotted
                    // keys written in another section.
                    throw failure(
                        "cannot add to table '\(name)' with dotted keys because it is defined by a header on line \(slot.keyLine)",
                        at: part)
                }
            case .tableArray:
                throw failure(
                    "cannot add to array of tables '\(name)' with dotted keys (defined on line \(slot.keyLine))",
                    at: part)
            case .value(let node):
                throw notATable(node, name: name, keyLine: slot.keyLine, at: part)
            }
        }
        return current
    }

    /// Walks the leading parts of a header, creating implicit tables and entering the last
    /// element of arrays of tables (TOML 1.0 §Array of Tables: sub-tables refer to the most
    /// recently defined element).
    private static func headerParent(
        _ key: [TOMLKeyPart], line: Int, root: TOMLTableBuilder
    ) throws(TOMLError) -> TOMLTableBuilder {
        var current = root
        for position in key.indices.dropLast() {
            let part = key[position]
            guard let index = current.index(of: part.name) else {
                let created = TOMLTableBuilder(line: line, origin: .implicit)
                current.append(.init(key: part.name, keyLine: line, item: .table(created)))
                current = created
                continue
            }
            let slot = current.slots[index]
            switch slot.item {
            case .table(let next):
                // TOML 1.0 §Table: `[fruit.apple.texture]` may go through tables created by dotted
                // keys or by headers; only the last part must be new.
                current = next
            case .tableArray(let array):
                guard let last = array.tables.last else {
                    throw failure("array of tables '\(display(key[...position]))' is empty", at: part)
                }
                current = last
            case .value(let node):
                throw notATable(node, name: display(key[...position]), keyLine: slot.keyLine, at: part)
            }
        }
        return current
    }

    private static func notATable(
        _ node: TOMLNode, name: String, keyLine: Int, at part: TOMLKeyPart
    ) -> TOMLError {
        switch node.value {
        case .table:
            return failure("cannot extend inline table '\(name)' defined on line \(keyLine)", at: part)
        case .array:
            return failure("cannot extend static array '\(name)' defined on line \(keyLine)", at: part)
        default:
            return failure("key '\(name)' is not a table; it is defined as a value on line \(keyLine)", at: part)
        }
    }

    private static func valueConflict(
        _ node: TOMLNode, name: String, keyLine: Int, at part: TOMLKeyPart
    ) -> TOMLError {
        if case .table = node.value {
            return failure("cannot extend inline table '\(name)' defined on line \(keyLine)", at: part)
        }
        return failure("duplicate key '\(name)' (first defined on line \(keyLine))", at: part)
    }

    private static func failure(_ message: String, at part: TOMLKeyPart) -> TOMLError {
        TOMLError(line: part.position.line, column: part.position.column, message: message)
    }

    /// A key as it would be written in TOML, quoting parts that are not bare keys and
    /// shortening very long keys so messages stay readable.
    static func display(_ parts: ArraySlice<TOMLKeyPart>) -> String {
        var text = ""
        for part in parts {
            if !text.isEmpty { text += "." }
            let name = part.name
            if !name.isEmpty && name.unicodeScalars.allSatisfy(TOMLSyntax.isBareKeyCharacter) {
                text += name
            } else {
                text += "\""
                for scalar in name.unicodeScalars {
                    switch scalar {
                    case "\"": text += "\\\""
                    case "\\": text += "\\\\"
                    default:
                        if TOMLSyntax.isControl(scalar) {
                            text += TOMLSyntax.codePoint(scalar)
                        } else {
                            text.unicodeScalars.append(scalar)
                        }
                    }
                }
                text += "\""
            }
        }
        return TOMLSyntax.shortened(text)
    }
}
