import PayhookTestSupport
import Testing

@testable import PayhookTOML

/// Tests of the TOML 1.0 parser: values, source lines, errors and robustness.
@Suite struct TOMLTests {
    // MARK: - Helpers

    /// Follows `path` through nested tables and returns the node at the end.
    private func node(_ table: TOMLTable, _ path: String...) -> TOMLNode? {
        var current = table
        for (position, key) in path.enumerated() {
            guard let found = current[key] else { return nil }
            if position == path.count - 1 { return found }
            guard case .table(let next) = found.value else { return nil }
            current = next
        }
        return nil
    }

    private func value(_ table: TOMLTable, _ path: String...) -> TOMLValue? {
        var current = table
        for (position, key) in path.enumerated() {
            guard let found = current[key] else { return nil }
            if position == path.count - 1 { return found.value }
            guard case .table(let next) = found.value else { return nil }
            current = next
        }
        return nil
    }

    private func table(_ value: TOMLValue?) -> TOMLTable? {
        if case .table(let table)? = value { return table }
        return nil
    }

    private func array(_ value: TOMLValue?) -> [TOMLNode]? {
        if case .array(let nodes)? = value { return nodes }
        return nil
    }

    private func double(_ value: TOMLValue?) -> Double? {
        if case .float(let number)? = value { return number }
        return nil
    }

    /// Parses `document` and returns the error it must produce.
    private func parseError(_ document: String) -> TOMLError? {
        do {
            _ = try TOML.parse(document)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Value types

    @Test func basicStringsResolveEveryEscape() throws {
        let doc = #"""
            s1 = "tab\tnewline\nquote\"backslash\\"
            s2 = "\u00E9\U0001F600"
            s3 = "\b\f\r"
            s4 = "tab	inside"
            s5 = "non-ASCII: ü ʎǝʞ"
            empty = ""
            """#
        let root = try TOML.parse(doc)
        #expect(value(root, "s1") == .string("tab\tnewline\nquote\"backslash\\"))
        #expect(value(root, "s2") == .string("é😀"))
        #expect(value(root, "s3") == .string("\u{08}\u{0C}\r"))
        #expect(value(root, "s4") == .string("tab\tinside"))
        #expect(value(root, "s5") == .string("non-ASCII: ü ʎǝʞ"))
        #expect(value(root, "empty") == .string(""))
    }

    @Test func multilineBasicStrings() throws {
        let doc = #"""
            trimmed = """
            Roses are red
            Violets are blue"""
            fox1 = """
            The quick brown \
              fox jumps over \
                the lazy dog."""
            fox2 = """\
                   The quick brown \
                   fox jumps over \
                   the lazy dog.\
                   """
            two = """Here are two quotation marks: "". Simple enough."""
            three = """Here are three quotation marks: ""\"."""
            edges = """"This," she said, "is just a pointless statement.""""
            escapes = """\tx\u0041"""
            """#
        let root = try TOML.parse(doc)
        #expect(value(root, "trimmed") == .string("Roses are red\nViolets are blue"))
        #expect(value(root, "fox1") == .string("The quick brown fox jumps over the lazy dog."))
        #expect(value(root, "fox2") == .string("The quick brown fox jumps over the lazy dog."))
        #expect(value(root, "two") == .string(#"Here are two quotation marks: "". Simple enough."#))
        #expect(value(root, "three") == .string(#"Here are three quotation marks: """."#))
        #expect(value(root, "edges") == .string(#""This," she said, "is just a pointless statement.""#))
        #expect(value(root, "escapes") == .string("\txA"))
    }

    @Test func literalStrings() throws {
        let doc = #"""
            winpath = 'C:\Users\nodejs\templates'
            quoted = 'Tom "Dubs" Preston-Werner'
            regex = '<\i\c*\s*>'
            regex2 = '''I [dw]on't need \d{2} apples'''
            lines = '''
            The first newline is
            trimmed in raw strings.
               All other whitespace
               is preserved.
            '''
            quot15 = '''Here are fifteen quotation marks: """""""""""""""'''
            apos15 = "Here are fifteen apostrophes: '''''''''''''''"
            edges = ''''That,' she said, 'is still pointless.''''
            empty = ''
            """#
        let root = try TOML.parse(doc)
        #expect(value(root, "winpath") == .string(#"C:\Users\nodejs\templates"#))
        #expect(value(root, "quoted") == .string(#"Tom "Dubs" Preston-Werner"#))
        #expect(value(root, "regex") == .string(#"<\i\c*\s*>"#))
        #expect(value(root, "regex2") == .string(#"I [dw]on't need \d{2} apples"#))
        #expect(
            value(root, "lines")
                == .string("The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n")
        )
        #expect(
            value(root, "quot15") == .string("Here are fifteen quotation marks: " + String(repeating: "\"", count: 15)))
        #expect(value(root, "apos15") == .string("Here are fifteen apostrophes: '''''''''''''''"))
        #expect(value(root, "edges") == .string("'That,' she said, 'is still pointless.'"))
        #expect(value(root, "empty") == .string(""))
    }

    @Test func integersInEveryForm() throws {
        let doc = """
            int1 = +99
            int2 = 42
            int3 = 0
            int4 = -17
            int5 = 1_000
            int6 = 5_349_221
            int7 = 1_2_3_4_5
            plus0 = +0
            minus0 = -0
            hex1 = 0xDEADBEEF
            hex2 = 0xdead_beef
            hex3 = 0x00ff
            oct1 = 0o01234567
            oct2 = 0o755
            bin1 = 0b11010110
            max = 9223372036854775807
            min = -9223372036854775808
            hexmax = 0x7FFFFFFFFFFFFFFF
            """
        let root = try TOML.parse(doc)
        let expected: [(String, Int64)] = [
            ("int1", 99), ("int2", 42), ("int3", 0), ("int4", -17), ("int5", 1000), ("int6", 5_349_221),
            ("int7", 12345), ("plus0", 0), ("minus0", 0), ("hex1", 0xDEAD_BEEF), ("hex2", 0xDEAD_BEEF),
            ("hex3", 255), ("oct1", 0o01234567), ("oct2", 0o755), ("bin1", 0b11010110),
            ("max", Int64.max), ("min", Int64.min), ("hexmax", Int64.max),
        ]
        #expect(root.keys == expected.map(\.0))
        for (key, number) in expected {
            #expect(value(root, key) == .integer(number), "key \(key)")
        }
    }

    @Test func floatsInEveryForm() throws {
        let doc = """
            flt1 = +1.0
            flt2 = 3.1415
            flt3 = -0.01
            flt4 = 5e+22
            flt5 = 1e06
            flt6 = -2E-2
            flt7 = 6.626e-34
            flt8 = 224_617.445_991_228
            flt9 = 1e1_0
            zero = -0.0
            exp0 = 0e0
            sf1 = inf
            sf2 = +inf
            sf3 = -inf
            sf4 = nan
            sf5 = +nan
            sf6 = -nan
            """
        let root = try TOML.parse(doc)
        #expect(value(root, "flt1") == .float(1.0))
        #expect(value(root, "flt2") == .float(3.1415))
        #expect(value(root, "flt3") == .float(-0.01))
        #expect(value(root, "flt4") == .float(5e22))
        #expect(value(root, "flt5") == .float(1e6))
        #expect(value(root, "flt6") == .float(-0.02))
        #expect(value(root, "flt7") == .float(6.626e-34))
        #expect(value(root, "flt8") == .float(224_617.445_991_228))
        #expect(value(root, "flt9") == .float(1e10))
        let negativeZero = try #require(double(value(root, "zero")))
        #expect(negativeZero == 0 && negativeZero.sign == .minus)
        #expect(value(root, "exp0") == .float(0))
        #expect(value(root, "sf1") == .float(.infinity))
        #expect(value(root, "sf2") == .float(.infinity))
        #expect(value(root, "sf3") == .float(-.infinity))
        for key in ["sf4", "sf5", "sf6"] {
            let number = try #require(double(value(root, key)), "key \(key)")
            #expect(number.isNaN, "key \(key)")
        }
    }

    @Test func booleans() throws {
        let root = try TOML.parse("yes = true\nno = false\n")
        #expect(value(root, "yes") == .boolean(true))
        #expect(value(root, "no") == .boolean(false))
    }

    @Test func dateTimesAreValidatedAndKeptAsWritten() throws {
        let texts = [
            "1979-05-27T07:32:00Z",
            "1979-05-27T00:32:00-07:00",
            "1979-05-27T00:32:00.999999-07:00",
            "1979-05-27 07:32:00Z",
            "1979-05-27t07:32:00z",
            "1979-05-27T07:32:00",
            "1979-05-27T00:32:00.999999",
            "1979-05-27",
            "07:32:00",
            "00:32:00.999999",
            "2024-02-29",
            "2000-02-29",
            "1990-12-31T23:59:60Z",
            "0000-01-01T00:00:00+23:59",
        ]
        let doc = texts.enumerated().map { "d\($0.offset) = \($0.element)" }.joined(separator: "\n")
        let root = try TOML.parse(doc)
        for (position, text) in texts.enumerated() {
            #expect(value(root, "d\(position)") == .datetime(text))
        }
        // The space form only joins a date and a time; anything else after a date is an error.
        let dateThenComment = try TOML.parse("d = 1979-05-27 # a comment")
        #expect(value(dateThenComment, "d") == .datetime("1979-05-27"))
    }

    @Test func arraysOfEveryShape() throws {
        let doc = #"""
            integers = [ 1, 2, 3 ]
            nested = [ [ 1, 2 ], ["a", 'b'] ]
            strings = [ "all", 'strings', """are the same""", '''type''' ]
            mixed = [ 0.1, 1, "x", true, 1979-05-27, [], {} ]
            contributors = [
              "Foo Bar <foo@example.com>",
              { name = "Baz Qux", email = "bazqux@example.com" }
            ]
            trailing = [
              1,
              2, # this is ok
            ]
            empty = []
            commented = [ # comment
              # another
            ]
            """#
        let root = try TOML.parse(doc)
        #expect(array(value(root, "integers"))?.map(\.value) == [.integer(1), .integer(2), .integer(3)])
        let nested = try #require(array(value(root, "nested")))
        #expect(array(nested.first?.value)?.map(\.value) == [.integer(1), .integer(2)])
        #expect(array(nested.last?.value)?.map(\.value) == [.string("a"), .string("b")])
        #expect(
            array(value(root, "strings"))?.map(\.value)
                == [.string("all"), .string("strings"), .string("are the same"), .string("type")])
        let mixed = try #require(array(value(root, "mixed")))
        #expect(
            mixed.map(\.value) == [
                .float(0.1), .integer(1), .string("x"), .boolean(true), .datetime("1979-05-27"), .array([]),
                .table(TOMLTable(line: 4)),
            ])
        let contributors = try #require(array(value(root, "contributors")))
        #expect(contributors.count == 2)
        let inline = try #require(table(contributors.last?.value))
        #expect(inline.keys == ["name", "email"])
        #expect(inline["email"]?.value == .string("bazqux@example.com"))
        #expect(array(value(root, "trailing"))?.map(\.value) == [.integer(1), .integer(2)])
        #expect(value(root, "empty") == .array([]))
        #expect(value(root, "commented") == .array([]))
    }

    @Test func inlineTables() throws {
        let doc = """
            name = { first = "Tom", last = "Preston-Werner" }
            point = {x=1,y=2}
            animal = { type.name = "pug", type.size = "small" }
            empty = {}
            nested = { a = { b = { c = 1 } } }
            """
        let root = try TOML.parse(doc)
        #expect(table(value(root, "name"))?.keys == ["first", "last"])
        #expect(value(root, "name", "last") == .string("Preston-Werner"))
        #expect(value(root, "point", "y") == .integer(2))
        #expect(table(value(root, "animal", "type"))?.keys == ["name", "size"])
        #expect(value(root, "animal", "type", "name") == .string("pug"))
        #expect(value(root, "empty") == .table(TOMLTable(line: 4)))
        #expect(value(root, "nested", "a", "b", "c") == .integer(1))
    }

    @Test func bareQuotedAndDottedKeys() throws {
        let doc = #"""
            key = 1
            bare_key = 2
            bare-key = 3
            1234 = 4
            "127.0.0.1" = 5
            "character encoding" = 6
            "ʎǝʞ" = 7
            'quoted "value"' = 8
            "" = 9
            "esc\u0041ped" = 10
            3.14159 = "pi"
            fruit . color = "yellow"
            fruit.	flavor = "banana"
            site."google.com" = true
            """#
        let root = try TOML.parse(doc)
        #expect(
            root.keys == [
                "key", "bare_key", "bare-key", "1234", "127.0.0.1", "character encoding", "ʎǝʞ", #"quoted "value""#,
                "", "escAped", "3", "fruit", "site",
            ])
        #expect(value(root, "") == .integer(9))
        #expect(value(root, "3", "14159") == .string("pi"))
        #expect(table(value(root, "fruit"))?.keys == ["color", "flavor"])
        #expect(value(root, "site", "google.com") == .boolean(true))
    }

    @Test func tablesAndImplicitSuperTables() throws {
        let doc = """
            [a.b.c]
            x = 1

            [a]
            y = 2

            [fruit]
            apple.color = "red"
            apple.taste.sweet = true

            [fruit.apple.texture]
            smooth = true

            [ dog . "tater.man" ]
            type.name = "pug"
            """
        let root = try TOML.parse(doc)
        #expect(root.keys == ["a", "fruit", "dog"])
        #expect(table(value(root, "a"))?.keys == ["b", "y"])
        #expect(value(root, "a", "b", "c", "x") == .integer(1))
        #expect(value(root, "fruit", "apple", "texture", "smooth") == .boolean(true))
        #expect(table(value(root, "fruit", "apple"))?.keys == ["color", "taste", "texture"])
        #expect(value(root, "dog", "tater.man", "type", "name") == .string("pug"))
    }

    @Test func arraysOfTables() throws {
        let doc = """
            [[fruits]]
            name = "apple"

            [fruits.physical]  # subtable
            color = "red"

            [[fruits.varieties]]  # nested array of tables
            name = "red delicious"

            [[fruits.varieties]]
            name = "granny smith"

            [[fruits]]
            name = "banana"

            [[fruits.varieties]]
            name = "plantain"

            [[products]]

            [[ products ]]
            name = "Nail"
            """
        let root = try TOML.parse(doc)
        let fruits = try #require(array(value(root, "fruits")))
        #expect(fruits.count == 2)
        let apple = try #require(table(fruits.first?.value))
        #expect(apple.keys == ["name", "physical", "varieties"])
        #expect(value(apple, "physical", "color") == .string("red"))
        let appleVarieties = try #require(array(value(apple, "varieties")))
        #expect(
            appleVarieties.compactMap { table($0.value)?["name"]?.value } == [
                .string("red delicious"), .string("granny smith"),
            ])
        let banana = try #require(table(fruits.last?.value))
        #expect(array(value(banana, "varieties"))?.count == 1)
        let products = try #require(array(value(root, "products")))
        let nail = TOMLEntry(key: "name", keyLine: 22, node: TOMLNode(value: .string("Nail"), line: 22))
        #expect(products.map(\.value) == [.table(TOMLTable(line: 19)), .table(TOMLTable(line: 21, entries: [nail]))])
        #expect(products.map(\.line) == [19, 21])
    }

    // MARK: - Line numbers

    @Test func realisticConfigRecordsEveryLine() throws {
        let doc = """
            listen = "127.0.0.1:8080"     # host:port
            spool = "spool"
            max_body_bytes = 65536

            [[unified]]
            path = "/notify/unified"
            domain_code = "test"
            secret_file = "secrets/test.secret"
            sign_scheme = "values-sha1"

            [[unified]]
            path = "/notify/unified"
            domain_code = "other"
            secret_env = "OTHER_SECRET"
            """
        let root = try TOML.parse(doc)
        #expect(root.line == 1)
        #expect(root.keys == ["listen", "spool", "max_body_bytes", "unified"])
        #expect(value(root, "listen") == .string("127.0.0.1:8080"))
        #expect(value(root, "spool") == .string("spool"))
        #expect(value(root, "max_body_bytes") == .integer(65536))
        #expect(root.entries.map(\.keyLine) == [1, 2, 3, 5])
        #expect(root.entries.map(\.node.line) == [1, 2, 3, 5])

        let unified = try #require(array(value(root, "unified")))
        #expect(unified.map(\.line) == [5, 11])
        let first = try #require(table(unified.first?.value))
        let second = try #require(table(unified.last?.value))
        #expect(first.line == 5)
        #expect(second.line == 11)
        #expect(first.keys == ["path", "domain_code", "secret_file", "sign_scheme"])
        #expect(first.entries.map(\.keyLine) == [6, 7, 8, 9])
        #expect(first.entries.map(\.node.line) == [6, 7, 8, 9])
        #expect(first["sign_scheme"]?.value == .string("values-sha1"))
        #expect(second.keys == ["path", "domain_code", "secret_env"])
        #expect(second.entries.map(\.keyLine) == [12, 13, 14])
        #expect(second["domain_code"]?.value == .string("other"))
        #expect(second.entry("secret_env")?.keyLine == 14)
        #expect(second.entry("secret_file") == nil)
    }

    @Test func linesOfValuesInsideMultilineArraysAndStrings() throws {
        let doc = #"""
            a = [
              1,
              [
                "x",
              ],
              { k = 1 },
            ]
            s = """
            text
            """
            after = 1
            t.u.v = 2
            lit = '''
            one
            two'''
            """#
        // Garbage right after a multi-line value is reported on the value's last line.
        let error = try #require(parseError(doc + "; x = 1"))
        #expect(error == TOMLError(line: 15, column: 7, message: "expected end of line after value, found ';'"))

        let root = try TOML.parse(doc)
        let items = try #require(array(value(root, "a")))
        #expect(node(root, "a")?.line == 1)
        #expect(items.map(\.line) == [2, 3, 6])
        #expect(array(items[1].value)?.first?.line == 4)
        #expect(table(items[2].value)?.line == 6)
        #expect(table(items[2].value)?.entry("k")?.keyLine == 6)
        #expect(root.entry("s")?.keyLine == 8)
        #expect(node(root, "s")?.line == 8)
        #expect(root.entry("after")?.keyLine == 11)
        #expect(root.entry("t")?.keyLine == 12)
        #expect(table(value(root, "t"))?.line == 12)
        #expect(node(root, "t", "u", "v")?.line == 12)
        #expect(root.entry("lit")?.keyLine == 13)
        #expect(value(root, "lit") == .string("one\ntwo"))
    }

    @Test func headerLinesAndImpliedTableLines() throws {
        let doc = """
            # comment
            [server.http]
            port = 80

            [server]
            name = "x"

            [a.b.c]
            [a.b.c.d]
            [[jobs]]
            [jobs.retry]
            limit = 3
            [[jobs]]
            """
        let root = try TOML.parse(doc)
        // `server` was implied on line 2, then defined by its own header on line 5.
        #expect(root.entry("server")?.keyLine == 5)
        #expect(table(value(root, "server"))?.line == 5)
        #expect(table(value(root, "server"))?.entry("http")?.keyLine == 2)
        #expect(table(value(root, "server", "http"))?.line == 2)
        #expect(node(root, "server", "http", "port")?.line == 3)
        // Implied and never defined: keeps the line where it was first implied.
        #expect(table(value(root, "a"))?.line == 8)
        #expect(table(value(root, "a", "b"))?.line == 8)
        #expect(table(value(root, "a", "b", "c"))?.line == 8)
        #expect(table(value(root, "a", "b", "c", "d"))?.line == 9)
        let jobs = try #require(array(value(root, "jobs")))
        #expect(node(root, "jobs")?.line == 10)
        #expect(jobs.map(\.line) == [10, 13])
        let firstJob = try #require(table(jobs.first?.value))
        #expect(firstJob.entry("retry")?.keyLine == 11)
        #expect(table(firstJob["retry"]?.value)?.line == 11)
        #expect(table(firstJob["retry"]?.value)?.entry("limit")?.keyLine == 12)
    }

    // MARK: - Line endings

    @Test func crlfLineEndingsParseLikeLF() throws {
        let lf = """
            listen = "127.0.0.1:8080" # c
            text = \"\"\"
            one
            two \\
              three\"\"\"
            lit = '''
            x
            '''
            list = [
              1,
              2,
            ]

            [[unified]]
            path = "/a"
            """
        let crlf = lf.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
        #expect(crlf.unicodeScalars.filter { $0 == "\r" }.count == 14)
        let fromLF = try TOML.parse(lf)
        let fromCRLF = try TOML.parse(crlf)
        #expect(fromCRLF == fromLF)
        #expect(value(fromCRLF, "text") == .string("one\ntwo three"))
        #expect(value(fromCRLF, "lit") == .string("x\n"))
        let unified = try #require(array(value(fromCRLF, "unified")))
        #expect(unified.first?.line == 14)
        #expect(table(unified.first?.value)?.entry("path")?.keyLine == 15)

        let error = try #require(parseError("a = 1\r\nb = 2\r\na = 3\r\n"))
        #expect(error == TOMLError(line: 3, column: 1, message: "duplicate key 'a' (first defined on line 1)"))
    }

    @Test func byteOrderMarkIsIgnored() throws {
        let root = try TOML.parse("\u{FEFF}a = 1")
        #expect(value(root, "a") == .integer(1))
        #expect(parseError("\u{FEFF}a = 1 x")?.column == 7)
    }

    @Test func emptyAndCommentOnlyDocuments() throws {
        #expect(try TOML.parse("") == TOMLTable(line: 1))
        #expect(try TOML.parse("# only a comment\n\n   \t\n# another") == TOMLTable(line: 1))
    }

    // MARK: - Errors

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        let name: String
        let document: String
        let line: Int
        let column: Int
        let message: String

        init(_ name: String, _ document: String, _ line: Int, _ column: Int, _ message: String) {
            self.name = name
            self.document = document
            self.line = line
            self.column = column
            self.message = message
        }

        var testDescription: String { name }
    }

    static let errorCases: [ErrorCase] = [
        // Duplicate keys and table redefinition.
        ErrorCase("duplicate key", "a = 1\na = 2", 2, 1, "duplicate key 'a' (first defined on line 1)"),
        ErrorCase("duplicate quoted key", "a = 1\n\"a\" = 2", 2, 1, "duplicate key 'a' (first defined on line 1)"),
        ErrorCase(
            "duplicate key in table", "[t]\npath = 1\n\npath = 2", 4, 1,
            "duplicate key 'path' (first defined on line 2)"),
        ErrorCase("duplicate dotted key", "a.b = 1\na.b = 2", 2, 3, "duplicate key 'a.b' (first defined on line 1)"),
        ErrorCase("value over dotted table", "a.b = 1\na = 2", 2, 1, "duplicate key 'a' (first defined on line 1)"),
        ErrorCase(
            "dotted key through a value", "a = 1\na.b = 2", 2, 1,
            "key 'a' is not a table; it is defined as a value on line 1"),
        ErrorCase(
            "duplicate key in inline table", "a = { b = 1, b = 2 }", 1, 14,
            "duplicate key 'b' (first defined on line 1)"),
        ErrorCase("table defined twice", "[a]\nx = 1\n[a]", 3, 2, "table 'a' is already defined on line 1"),
        ErrorCase("sub-table defined twice", "[a.b]\n[a]\n[a.b]", 3, 4, "table 'a.b' is already defined on line 1"),
        ErrorCase(
            "header after dotted keys", "a.b = 1\n[a]", 2, 2, "table 'a' is already defined by dotted keys on line 1"),
        ErrorCase(
            "header re-opens dotted table", "[fruit]\napple.color = \"red\"\n[fruit.apple]", 3, 8,
            "table 'fruit.apple' is already defined by dotted keys on line 2"),
        ErrorCase(
            "dotted keys into header table", "[a.b]\nx = 1\n[a]\nb.y = 2", 4, 1,
            "cannot add to table 'b' with dotted keys because it is defined by a header on line 1"),
        ErrorCase("header over value", "a = 1\n[a]", 2, 2, "duplicate key 'a' (first defined on line 1)"),
        ErrorCase(
            "header through value", "a = 1\n[a.b]", 2, 2, "key 'a' is not a table; it is defined as a value on line 1"),
        // Arrays of tables.
        ErrorCase(
            "append to static array", "x = [1]\n[[x]]", 2, 3, "cannot append to static array 'x' defined on line 1"),
        ErrorCase(
            "table over array of tables", "[[x]]\n[x]", 2, 2,
            "table 'x' is already defined as an array of tables on line 1"),
        ErrorCase("array of tables over table", "[x]\n[[x]]", 2, 3, "'x' is already defined as a table on line 1"),
        ErrorCase(
            "dotted keys into array of tables", "[[t.a]]\n[t]\na.b = 1", 3, 1,
            "cannot add to array of tables 'a' with dotted keys (defined on line 1)"),
        ErrorCase(
            "header through static array", "a = [{ b = 1 }]\n[a.c]", 2, 2,
            "cannot extend static array 'a' defined on line 1"),
        // Inline tables are closed.
        ErrorCase(
            "header extends inline table", "a = { b = 1 }\n[a]", 2, 2,
            "cannot extend inline table 'a' defined on line 1"),
        ErrorCase(
            "sub-table extends inline table", "a = { b = 1 }\n[a.c]", 2, 2,
            "cannot extend inline table 'a' defined on line 1"),
        ErrorCase(
            "dotted key extends inline table", "a = { b = 1 }\na.c = 2", 2, 1,
            "cannot extend inline table 'a' defined on line 1"),
        ErrorCase(
            "array of tables extends inline table", "a = {}\n[[a]]", 2, 3,
            "cannot extend inline table 'a' defined on line 1"),
        ErrorCase(
            "inline table extends its own inline table", "a = { b = { c = 1 }, b.d = 2 }", 1, 22,
            "cannot extend inline table 'b' defined on line 1"),
        // Control characters.
        ErrorCase("control in string", "a = \"x\u{07}y\"", 1, 7, "control character U+0007 is not allowed in a string"),
        ErrorCase("NUL in string", "a = \"\u{00}\"", 1, 6, "control character U+0000 is not allowed in a string"),
        ErrorCase(
            "DEL in literal string", "a = 'x\u{7F}'", 1, 7,
            "control character U+007F is not allowed in a literal string"),
        ErrorCase(
            "control in multi-line string", "a = \"\"\"\nx\u{1B}\"\"\"", 2, 2,
            "control character U+001B is not allowed in a string"),
        ErrorCase(
            "control in multi-line literal", "a = '''\u{0C}'''", 1, 8,
            "control character U+000C is not allowed in a literal string"),
        ErrorCase(
            "control in comment", "a = 1 # hi\u{01}", 1, 11, "control character U+0001 is not allowed in a comment"),
        ErrorCase("DEL in comment", "# \u{7F}", 1, 3, "control character U+007F is not allowed in a comment"),
        // Unterminated constructs are reported where they open.
        ErrorCase("unterminated string at newline", "a = \"abc\nb = 1", 1, 5, "unterminated string"),
        ErrorCase("unterminated string at end", "a = \"abc", 1, 5, "unterminated string"),
        ErrorCase("unterminated string after escape", "a = \"abc\\", 1, 5, "unterminated string"),
        ErrorCase("unterminated literal string", "a = 'abc\n", 1, 5, "unterminated string"),
        ErrorCase("unterminated multi-line string", "x = 1\na = \"\"\"abc\n\n", 2, 5, "unterminated multi-line string"),
        ErrorCase("unterminated multi-line literal", "a = '''abc''", 1, 5, "unterminated multi-line string"),
        ErrorCase("unterminated array", "a = [1, 2", 1, 5, "unterminated array"),
        ErrorCase("unterminated array over lines", "a = [\n 1,\n # c\n", 1, 5, "unterminated array"),
        ErrorCase(
            "array missing comma", "a = [1, 2\nb = 3", 2, 1, "expected ',' or ']' after array element, found 'b'"),
        ErrorCase("unterminated inline table", "a = { b = 1", 1, 5, "unterminated inline table"),
        ErrorCase("newline in inline table", "a = { b = 1,\n c = 2 }", 1, 5, "unterminated inline table"),
        ErrorCase(
            "inline table trailing comma", "a = { b = 1, }", 1, 12, "trailing comma is not allowed in an inline table"),
        ErrorCase(
            "inline table missing comma", "a = { b = 1 c = 2 }", 1, 13, "expected ',' or '}' in inline table, found 'c'"
        ),
        // Missing '=' or value, and garbage after a value.
        ErrorCase("missing equals", "a 1", 1, 3, "expected '=' after key 'a', found '1'"),
        ErrorCase(
            "missing equals at end of line", "[t]\nname\nx = 1", 2, 5,
            "expected '=' after key 'name', found end of line"),
        ErrorCase("missing equals in inline table", "a = { b }", 1, 9, "expected '=' after key 'b', found '}'"),
        ErrorCase("missing key", "= 1", 1, 1, "expected a key, found '='"),
        ErrorCase("dangling dot in key", "a. = 1", 1, 4, "expected a key, found '='"),
        ErrorCase("multi-line string key", "\"\"\"k\"\"\" = 1", 1, 1, "a multi-line string cannot be used as a key"),
        ErrorCase("missing value at end of line", "a =\nb = 1", 1, 4, "missing value"),
        ErrorCase("missing value before comment", "a = # c", 1, 5, "missing value"),
        ErrorCase("missing value at end of input", "a = ", 1, 5, "missing value"),
        ErrorCase("missing array element", "a = [1,,2]", 1, 8, "missing value"),
        ErrorCase("array of only a comma", "a = [,]", 1, 6, "missing value"),
        ErrorCase("not a value", "a = @", 1, 5, "expected a value, found '@'"),
        ErrorCase("garbage after integer", "a = 1 2", 1, 7, "expected end of line after value, found '2'"),
        ErrorCase("garbage after string", "a = \"x\"y", 1, 8, "expected end of line after value, found 'y'"),
        ErrorCase("two pairs on one line", "a = 1 b = 2", 1, 7, "expected end of line after value, found 'b'"),
        ErrorCase("garbage after header", "[a] b = 1", 1, 5, "expected end of line after table header, found 'b'"),
        ErrorCase(
            "extra quote after multi-line string", "a = \"\"\"x\"\"\"\"\"\"", 1, 14,
            "expected end of line after value, found '\"'"),
        // Headers.
        ErrorCase("unclosed header", "[a", 1, 3, "expected ']' to close the table header, found end of input"),
        ErrorCase(
            "unclosed array header", "[[a]\nx = 1", 1, 5,
            "expected ']]' to close the array-of-tables header, found end of line"),
        ErrorCase("empty header", "[]", 1, 2, "expected a key, found ']'"),
        ErrorCase("space inside [[", "[ [a]]", 1, 3, "expected a key, found '['"),
        // Line endings.
        ErrorCase("lone carriage return", "a = 1\rb = 2", 1, 6, "carriage return is not followed by a line feed"),
        ErrorCase("carriage return after comment", "# x\r", 1, 4, "carriage return is not followed by a line feed"),
        ErrorCase("carriage return in string", "a = \"x\ry\"", 1, 7, "carriage return is not followed by a line feed"),
        ErrorCase(
            "carriage return in multi-line string", "a = \"\"\"x\ry\"\"\"", 1, 9,
            "carriage return is not followed by a line feed"),
        // Escapes.
        ErrorCase("invalid escape", "a = \"\\q\"", 1, 6, "invalid escape sequence '\\q'"),
        ErrorCase("TOML 1.1 escape", "a = \"\\x41\"", 1, 6, "invalid escape sequence '\\x'"),
        ErrorCase("TOML 1.1 escape e", "a = \"\\e\"", 1, 6, "invalid escape sequence '\\e'"),
        ErrorCase(
            "escaped space in single-line string", "a = \"x\\ \"", 1, 7, "invalid escape sequence: '\\' followed by ' '"
        ),
        ErrorCase(
            "backslash then text in multi-line string", "a = \"\"\"x\\  y\"\"\"", 1, 9,
            "invalid escape sequence: '\\' followed by ' '"),
        ErrorCase(
            "surrogate escape", "a = \"\\uD800\"", 1, 6, "escape '\\uD800' is not a valid Unicode scalar value"),
        ErrorCase(
            "out-of-range escape", "a = \"\\U00110000\"", 1, 6,
            "escape '\\U00110000' is not a valid Unicode scalar value"),
        ErrorCase("short \\u escape", "a = \"\\u12\"", 1, 6, "escape '\\u' needs exactly 4 hexadecimal digits"),
        ErrorCase("short \\U escape", "a = \"\\U0001F60\"", 1, 6, "escape '\\U' needs exactly 8 hexadecimal digits"),
        // Numbers.
        ErrorCase("leading zero", "a = 01", 1, 5, "invalid number '01': leading zeros are not allowed"),
        ErrorCase("signed leading zero", "a = -01", 1, 5, "invalid number '-01': leading zeros are not allowed"),
        ErrorCase("leading zero in float", "a = 00.5", 1, 5, "invalid number '00.5': leading zeros are not allowed"),
        ErrorCase("double underscore", "a = 1__0", 1, 5, "invalid number '1__0': '_' must be between digits"),
        ErrorCase("trailing underscore", "a = 1_", 1, 5, "invalid number '1_': '_' must be between digits"),
        ErrorCase("underscore before fraction", "a = 1_.5", 1, 5, "invalid number '1_.5': '_' must be between digits"),
        ErrorCase("underscore after prefix", "a = 0x_1", 1, 5, "invalid number '0x_1': '_' must be between digits"),
        ErrorCase(
            "integer overflow", "a = 9223372036854775808", 1, 5,
            "invalid number '9223372036854775808': it does not fit in a 64-bit signed integer"),
        ErrorCase(
            "negative integer overflow", "a = -9223372036854775809", 1, 5,
            "invalid number '-9223372036854775809': it does not fit in a 64-bit signed integer"),
        ErrorCase(
            "hex overflow", "a = 0x8000000000000000", 1, 5,
            "invalid number '0x8000000000000000': it does not fit in a 64-bit signed integer"),
        ErrorCase(
            "signed hex", "a = +0x1", 1, 5,
            "invalid number '+0x1': a sign is not allowed on hexadecimal, octal or binary integers"),
        ErrorCase("bad hex digit", "a = 0xAG", 1, 5, "invalid number '0xAG': 'G' is not a digit in base 16"),
        ErrorCase("bad octal digit", "a = 0o8", 1, 5, "invalid number '0o8': '8' is not a digit in base 8"),
        ErrorCase("bad binary digit", "a = 0b102", 1, 5, "invalid number '0b102': '2' is not a digit in base 2"),
        ErrorCase("empty hex", "a = 0x", 1, 5, "invalid number '0x': expected a digit"),
        ErrorCase("uppercase prefix", "a = 0X1F", 1, 5, "invalid number '0X1F': unexpected 'X'"),
        ErrorCase("bare sign", "a = -", 1, 5, "invalid number '-': expected a digit"),
        ErrorCase("trailing dot", "a = 1.", 1, 5, "invalid number '1.': a decimal point must be followed by digits"),
        ErrorCase("leading dot", "a = .5", 1, 5, "invalid number '.5': expected a digit"),
        ErrorCase(
            "dot before exponent", "a = 1.e5", 1, 5, "invalid number '1.e5': a decimal point must be followed by digits"
        ),
        ErrorCase("empty exponent", "a = 1e", 1, 5, "invalid number '1e': an exponent must have digits"),
        ErrorCase("two dots", "a = 1.5.3", 1, 5, "invalid number '1.5.3': unexpected '.'"),
        ErrorCase("uppercase inf", "a = Inf", 1, 5, "invalid value 'Inf'; strings must be quoted"),
        ErrorCase("unquoted word", "a = hello", 1, 5, "invalid value 'hello'; strings must be quoted"),
        ErrorCase("capitalised boolean", "a = True", 1, 5, "invalid value 'True'; strings must be quoted"),
        // Date-times.
        ErrorCase(
            "February 29 in a common year", "d = 2023-02-29", 1, 5,
            "invalid date-time '2023-02-29': day is out of range for the month"),
        ErrorCase(
            "February 29 in 1900", "d = 1900-02-29", 1, 5,
            "invalid date-time '1900-02-29': day is out of range for the month"),
        ErrorCase("month 13", "d = 2023-13-01", 1, 5, "invalid date-time '2023-13-01': month must be 01 to 12"),
        ErrorCase(
            "day zero", "d = 2023-01-00", 1, 5, "invalid date-time '2023-01-00': day is out of range for the month"),
        ErrorCase(
            "short date", "d = 2023-1-01", 1, 5, "invalid date-time '2023-1-01': a date must look like YYYY-MM-DD"),
        ErrorCase("hour 24", "t = 24:00:00", 1, 5, "invalid date-time '24:00:00': time out of range"),
        ErrorCase(
            "minute 60", "t = 1979-05-27T07:60:00", 1, 5, "invalid date-time '1979-05-27T07:60:00': time out of range"),
        ErrorCase(
            "time without seconds", "t = 1979-05-27T07:32", 1, 5,
            "invalid date-time '1979-05-27T07:32': a time must look like HH:MM:SS"),
        ErrorCase(
            "offset out of range", "t = 1979-05-27T07:32:00+24:00", 1, 5,
            "invalid date-time '1979-05-27T07:32:00+24:00': time offset out of range"),
        ErrorCase(
            "offset without colon", "t = 1979-05-27T07:32:00+0700", 1, 5,
            "invalid date-time '1979-05-27T07:32:00+0700': a time offset must look like +HH:MM"),
        ErrorCase(
            "empty fraction", "t = 07:32:00.", 1, 5, "invalid date-time '07:32:00.': fractional seconds need digits"),
        ErrorCase(
            "offset on a local time", "t = 07:32:00Z", 1, 5,
            "invalid date-time '07:32:00Z': unexpected text after the time"),
        ErrorCase(
            "bad separator", "t = 1979-05-27X07:32:00", 1, 5,
            "invalid date-time '1979-05-27X07:32:00': expected 'T' or a space between date and time"),
        ErrorCase(
            "date then bare text", "t = 1979-05-27 x", 1, 16, "expected end of line after value, found 'x'"),
        // Positions count Unicode scalars.
        ErrorCase("column after non-ASCII key", "\"é\" = 1 x", 1, 9, "expected end of line after value, found 'x'"),
        ErrorCase("non-ASCII bare key", "é = 1", 1, 1, "expected a key, found 'é'"),
    ]

    @Test(arguments: TOMLTests.errorCases)
    func errorsCarryLineColumnAndMessage(_ errorCase: ErrorCase) {
        let expected = TOMLError(line: errorCase.line, column: errorCase.column, message: errorCase.message)
        #expect(parseError(errorCase.document) == expected)
    }

    @Test func errorDescriptionNamesLineAndColumn() {
        let error = TOMLError(line: 3, column: 7, message: "duplicate key 'path'")
        #expect(error.description == "line 3, column 7: duplicate key 'path'")
        #expect("\(error)" == "line 3, column 7: duplicate key 'path'")
    }

    @Test func duplicateKeyInSecondUnifiedTableIsReportedThere() {
        let doc = """
            [[unified]]
            path = "/a"

            [[unified]]
            path = "/b"
            domain_code = "x"
            path = "/c"
            """
        #expect(
            parseError(doc) == TOMLError(line: 7, column: 1, message: "duplicate key 'path' (first defined on line 5)"))
    }

    // MARK: - Nesting limits

    @Test func nestingUpToTheLimitIsAccepted() throws {
        let depth = TOML.maximumDepth
        let arrays = "a = " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        var current = try #require(try TOML.parse(arrays)["a"]?.value)
        var levels = 1
        while case .array(let items) = current, let first = items.first {
            current = first.value
            levels += 1
        }
        #expect(levels == depth)

        let keys = (0..<depth).map { "k\($0)" }.joined(separator: ".") + " = 1"
        #expect(try TOML.parse(keys).keys == ["k0"])
    }

    @Test func nestingBeyondTheLimitIsAnError() {
        let depth = TOML.maximumDepth + 1
        let arrays = "a = " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(
            parseError(arrays)
                == TOMLError(line: 1, column: 4 + depth, message: "value is nested more than 128 levels deep"))

        let inline = "a = " + String(repeating: "{b=", count: depth) + "1" + String(repeating: "}", count: depth)
        #expect(parseError(inline)?.message == "value is nested more than 128 levels deep")

        let keys = (0..<depth).map { _ in "k" }.joined(separator: ".") + " = 1"
        #expect(
            parseError(keys) == TOMLError(line: 1, column: 2 * depth - 1, message: "key has more than 128 dotted parts")
        )

        let header = "[" + (0..<TOML.maximumDepth).map { _ in "h" }.joined(separator: ".") + "]\nx = 1"
        #expect(
            parseError(header) == TOMLError(line: 2, column: 5, message: "value is nested more than 128 levels deep"))

        // Far deeper input must fail cleanly rather than exhaust the stack.
        let huge = "a = " + String(repeating: "[", count: 100_000)
        #expect(parseError(huge)?.message == "value is nested more than 128 levels deep")
    }

    // MARK: - Robustness

    private static let seedDocuments = [
        """
        listen = "127.0.0.1:8080"     # host:port
        spool = "spool"
        max_body_bytes = 65536

        [[unified]]
        path = "/notify/unified"
        domain_code = "test"
        secret_file = "secrets/test.secret"
        sign_scheme = "values-sha1"

        [[unified]]
        path = "/notify/unified"
        domain_code = "other"
        secret_env = "OTHER_SECRET"
        """,
        #"""
        title = "TOML \"Example\" \u00E9"
        [owner]
        name = 'Tom'
        dob = 1979-05-27T07:32:00-08:00
        [database]
        ports = [ 8000, 8001, 0x1F, 0o7, 0b1 ]
        data = [ ["delta", "phi"], [3.14, -inf, nan] ]
        temp = { cpu = 79.5, case.max = 72.0 }
        text = """
        a \
          b""""
        lit = '''
        x'''
        [servers.alpha]
        ip = "10.0.0.1"
        t = 07:32:00.5
        [[products]]
        x.y = 1_000
        """#,
    ]

    private static let mutationAlphabet: [Unicode.Scalar] = [
        "\"", "'", "[", "]", "{", "}", "=", ".", ",", "#", "\n", "\r", "\t", " ", "\\", "u", "U", "0", "1", "9", "_",
        "e", "+", "-", ":", "T", "Z", "x", "a", "\u{00}", "\u{7F}", "é", "\u{FEFF}",
    ]

    @Test func mutatedDocumentsNeverTrap() {
        var generator = SeededGenerator(state: 0x5EED_7041)
        var parsed = 0
        var rejected = 0
        for iteration in 0..<4000 {
            var scalars = Array(Self.seedDocuments[iteration % Self.seedDocuments.count].unicodeScalars)
            let edits = Int.random(in: 1...4, using: &generator)
            for _ in 0..<edits {
                let position = Int.random(in: 0...scalars.count, using: &generator)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    scalars.insert(Self.mutationAlphabet.randomElement(using: &generator) ?? " ", at: position)
                case 1:
                    let end = min(scalars.count, position + Int.random(in: 1...8, using: &generator))
                    scalars.removeSubrange(position..<end)
                case 2:
                    let end = min(scalars.count, position + Int.random(in: 1...16, using: &generator))
                    scalars.insert(
                        contentsOf: scalars[position..<end], at: Int.random(in: 0...scalars.count, using: &generator))
                default:
                    if position < scalars.count {
                        scalars[position] = Self.mutationAlphabet.randomElement(using: &generator) ?? " "
                    }
                }
            }
            let text = String(String.UnicodeScalarView(scalars))
            let lineCount = scalars.filter { $0 == "\n" }.count + 1
            do {
                _ = try TOML.parse(text)
                parsed += 1
            } catch {
                rejected += 1
                #expect(error.line >= 1 && error.line <= lineCount, "\(error) for \(text.debugDescription)")
                #expect(error.column >= 1, "\(error) for \(text.debugDescription)")
                #expect(!error.message.isEmpty)
            }
        }
        // Both outcomes must actually occur, or the mutations are not exercising the parser.
        #expect(parsed > 100)
        #expect(rejected > 100)
    }
}
