// Package dissect holds the application-layer dissectors that name a flow's
// destination. The flow stage hands them the few payloads that can carry a
// name: DNS messages (whose answers map addresses back to the names a
// workload asked for), the first bytes a client sends on a TCP connection
// (a TLS ClientHello's server_name, an HTTP/1.x request's Host header).
//
// Only those packets get here, so the dissectors may allocate, but every
// length read from a packet is checked against the bytes present and
// bounded, and hostile input yields an error or a "not found", never a
// panic. Every name they return has been through NormalizeName.
package dissect
