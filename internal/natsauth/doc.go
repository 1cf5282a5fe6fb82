// Package natsauth is tpcluster's NATS least privilege (issue 12,
// docs/NATS-SECURITY.md): the roles and their subject permissions, a
// generator of a complete security set (operator, accounts and one user per
// role as standard creds files; a CA and server and client certificates;
// the nats-server configuration fragments), and the admin role's
// provisioning of the streams and buckets with their locks.
//
// It runs at set-up time, in commands (tpnats, and verifierd for its
// embedded server). It decides nothing about requests, and holds no
// connection of its own: Provision uses the JetStream handle it is given.
package natsauth
