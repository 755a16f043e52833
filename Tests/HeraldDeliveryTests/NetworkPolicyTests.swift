import HeraldDelivery
import Testing

@Suite("Outbound network policy")
struct NetworkPolicyTests {
    static let refused = [
        "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:c0a8:101::1", "::127.0.0.1", "2001:db8::1",
    ]
    static let allowed = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]

    @Test(arguments: refused)
    func privateAndSpecialAddressesAreRefused(address: String) throws {
        let ip = try #require(IPAddress(address))
        #expect(OutboundNetworkPolicy().refusal(for: ip) != nil, "\(address) was allowed")
    }

    @Test(arguments: allowed)
    func publicAddressesAreAllowed(address: String) throws {
        let ip = try #require(IPAddress(address))
        #expect(OutboundNetworkPolicy().refusal(for: ip) == nil, "\(address) was refused")
    }

    @Test func allowedNetworksOpenExactlyTheirRange() throws {
        let policy = OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!, CIDR("fd00::/8")!])
        #expect(policy.refusal(for: IPAddress("127.0.0.1")!) == nil)
        #expect(policy.refusal(for: IPAddress("::ffff:127.0.0.1")!) == nil)  // the same host, mapped
        #expect(policy.refusal(for: IPAddress("fd12::1")!) == nil)
        #expect(policy.refusal(for: IPAddress("10.0.0.1")!) != nil)
        #expect(policy.refusal(for: IPAddress("::1")!) != nil)
    }

    @Test func vettingLocalhostIsRefusedWithAClearReason() async throws {
        do {
            _ = try await OutboundNetworkPolicy().vet(host: "localhost")
            Issue.record("localhost was allowed")
        } catch let refusal as DeliveryRefusal {
            #expect(refusal.description.contains("loopback"))
            #expect(refusal.description.contains("--allow-network"))
        }
        let allowed = try await OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!]).vet(host: "localhost")
        #expect(["127.0.0.1", "::1"].contains(allowed.description))
    }

    @Test func cidrParsing() {
        #expect(CIDR("10.0.0.0/8") != nil)
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(CIDR("::/0") != nil)
        #expect(CIDR("nonsense") == nil)
        #expect(CIDR("10.0.0.0/8")!.contains(IPAddress("10.200.1.1")!))
        #expect(!CIDR("10.0.0.0/8")!.contains(IPAddress("11.0.0.1")!))
    }
}
