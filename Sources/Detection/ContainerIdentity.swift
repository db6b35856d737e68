// Which container a process runs in, as far as its cgroup v2 path tells:
// Docker (docker-<id>.scope, /docker/<id>), containerd's CRI (cri-containerd-
// <id>.scope), CRI-O (crio-<id>.scope), Podman (libpod-<id>.scope), and the
// Kubernetes pod (kubepods…pod<uid>.slice or /kubepods/…/pod<uid>/).

public struct ContainerIdentity: Equatable, Sendable {
    public var runtime: String      // docker, containerd, cri-o, podman, kubernetes
    public var containerId: String  // 64 hex (empty when only the pod is known)
    public var podUid: String       // Kubernetes pod uid, or empty

    public init(runtime: String, containerId: String, podUid: String) {
        self.runtime = runtime
        self.containerId = containerId
        self.podUid = podUid
    }

    public static func parse(_ path: String) -> ContainerIdentity? {
        var runtime = "", id = "", pod = ""
        for part in path.split(separator: "/") {
            let p = String(part)
            for (prefix, name) in [("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman")]
            where p.hasPrefix(prefix) && p.hasSuffix(".scope") {
                let candidate = String(p.dropFirst(prefix.count).dropLast(6))
                if isContainerId(candidate) { runtime = name; id = candidate }
            }
            if isContainerId(p) {
                // /docker/<id>, /kubepods/burstable/pod<uid>/<id>, /libpod_parent/libpod-<id>
                id = p
                if runtime.isEmpty { runtime = path.contains("/docker/") ? "docker" : path.contains("kubepods") ? "kubernetes" : "container" }
            }
            if p.hasSuffix(".slice"), p.hasPrefix("kubepods"), let r = p.firstRange(of: "-pod") {
                pod = String(p[r.upperBound...].dropLast(6)).replacingUnderscores()
            } else if p.hasPrefix("pod"), p.count >= 36, path.contains("kubepods") {
                pod = String(p.dropFirst(3))
            }
        }
        if !pod.isEmpty && runtime.isEmpty { runtime = "kubernetes" }
        guard !id.isEmpty || !pod.isEmpty else { return nil }
        return ContainerIdentity(runtime: runtime, containerId: id, podUid: pod)
    }

    static func isContainerId(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

extension String {
    func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}
