// Package nomadmeta publishes where a node's cached bytes are as Nomad
// dynamic node metadata, so render jobs can prefer, with an affinity, the
// nodes that already hold their sources.
//
// Key names a source (gs://BUCKET/PREFIX/) or a job by a short stable hash;
// the node daemon publishes the keys of what it holds as comma-separated
// lists (MetaSources, MetaJobs), and a job matches them with
//
//	affinity {
//	  attribute = "${meta.jitfs_sources}"
//	  operator  = "set_contains_any"
//	  value     = "<jitfs affinity-key gs://BUCKET/PREFIX>"
//	  weight    = 50
//	}
//
// Client speaks the Nomad client agent's HTTP API, POST /v1/client/metadata
// with a NodeMetaApplyRequest ({"NodeID": "", "Meta": {key: value or null}};
// an empty NodeID is the agent's own node, null unsets a key): the request
// `nomad node meta apply` sends. Publisher sends what changed, at most once
// per interval, in the background; an agent that does not answer is logged
// once per outage, counted and tried again at the next interval.
// docs/affinity.md describes it for operators.
package nomadmeta
