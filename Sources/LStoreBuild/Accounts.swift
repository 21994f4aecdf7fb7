import LStoreStore
import LStoreTree

/// USER and --chown: accounts from the tree's /etc/passwd and /etc/group.
extension Stage {
    struct Account {
        var uid: UInt32
        var gid: UInt32
        var groups: [UInt32]
        var home: String
    }

    /// The USER in effect, from the tree's /etc/passwd and /etc/group.
    func account(_ tree: Node, _ instruction: Instruction) throws -> Account {
        guard !user.isEmpty else { return Account(uid: 0, gid: 0, groups: [0], home: "/root") }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        let passwd = try accountFile(tree, "/etc/passwd")
        var account: Account
        if let entry = passwd.first(where: { $0[0] == parts[0] }) ?? UInt32(parts[0]).flatMap({ uid in passwd.first { $0[2] == String(uid) } }),
           entry.count >= 6, let uid = UInt32(entry[2]), let gid = UInt32(entry[3]) {
            account = Account(uid: uid, gid: gid, groups: [gid], home: entry[5])
            for group in try accountFile(tree, "/etc/group") where group.count >= 4 {
                if group[3].split(separator: ",").contains(Substring(entry[0])), let id = UInt32(group[2]), !account.groups.contains(id) {
                    account.groups.append(id)
                }
            }
        } else if let uid = UInt32(parts[0]) {
            account = Account(uid: uid, gid: uid, groups: [uid], home: "/")
        } else {
            throw fail(instruction, "USER \(user): no such user in /etc/passwd")
        }
        if parts.count > 1 {
            account.gid = try groupID(parts[1], tree, instruction)
            account.groups = [account.gid]
        }
        return account
    }

    func chownAccount(_ text: String, _ tree: Node, _ instruction: Instruction) throws -> (uid: UInt32, gid: UInt32) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard let name = parts.first else { throw fail(instruction, "--chown=\(text): user[:group]") }
        let passwd = try accountFile(tree, "/etc/passwd")
        let entry = passwd.first { $0[0] == name }
        guard let uid = UInt32(name) ?? entry.flatMap({ UInt32($0[2]) }) else {
            throw fail(instruction, "--chown=\(text): no user '\(name)' in /etc/passwd")
        }
        if parts.count > 1 { return (uid, try groupID(parts[1], tree, instruction)) }
        return (uid, entry.flatMap { UInt32($0[3]) } ?? uid)
    }

    func groupID(_ name: String, _ tree: Node, _ instruction: Instruction) throws -> UInt32 {
        if let id = UInt32(name) { return id }
        guard let group = try accountFile(tree, "/etc/group").first(where: { $0[0] == name }), group.count >= 3, let id = UInt32(group[2]) else {
            throw fail(instruction, "\(instruction.keyword): no group '\(name)' in /etc/group")
        }
        return id
    }

    /// The colon-separated lines of a file of the tree (at most 4 MiB).
    func accountFile(_ tree: Node, _ path: String) throws -> [[String]] {
        guard let found = tree.resolve(path), case .regular(let file) = found.node.content, file.size <= 4 << 20 else { return [] }
        var bytes: [UInt8] = []
        try StoreFileReader(store: store).stream(file) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }.filter { $0.count >= 3 }
    }
}
