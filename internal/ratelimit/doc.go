// Package ratelimit holds the limits mailtee's delivery keeps per
// receiving site and per mailbox, so that a fast drain does not trip a
// provider's receiving limits (Google Workspace locks a mailbox that
// receives too much; Microsoft 365 refuses with 5.2.121/5.2.122). It
// knows nothing of SMTP or of providers; internal/pace applies it to
// deliveries.
//
//   - Window and ParseWindows: the "N/INTERVAL, ..." lists of
//     TRANSPORT_recipient_rate_limit and TRANSPORT_destination_rate_limit.
//   - Limiter: keyed sliding windows, "at most N in any Per". An
//     attempt counts from its start until Per after its end, so the
//     remote, which counts it somewhere in between, never sees more than
//     N in any Per whatever the network delay. Window{1, delay} is
//     Postfix's TRANSPORT_destination_rate_delay. A blocked caller is
//     told when to come back, spread along the waiting line so that a
//     backlog for one busy mailbox is not woken all at once.
//   - Suspender: per-key suspensions with doubling backoff, for the
//     throttling replies that say "this site" or "this mailbox" is
//     over its limit.
//   - Bucket: a token bucket shared by all connections to a site, for
//     TRANSPORT_destination_bandwidth_limit.
//
// Every method takes the time as now, so that tests run on a fake
// clock; only the Bucket's writer reads the clock, since it sleeps.
package ratelimit
