# A render task that reads its scene through jitfs and writes its frames to
# GCS through a jitfs output area, served by the node's jitfs daemon
# (deploy/jitfs-daemon.service). `jitfs run --daemon` asks the daemon to
# mount both at the task's directories, runs Blender, waits until every
# frame is durable in GCS, detaches, and exits with Blender's exit status,
# or:
#   75  retry: frames could not be made durable, or the node daemon died
#       mid-task. Nothing closed is lost: the daemon journals staged frames
#       on the node's local SSD, restarts by itself (systemd Restart=always)
#       and uploads every frame the task had closed.
#   69  the daemon is unreachable (not installed, or restarting): with
#       --daemon given, `jitfs run` does not fall back to mounting itself.
# Nomad cannot restart on some exit codes only: the restart block below
# retries every failure in place, on the same node (where the restarted
# daemon has the predecessor's staged frames), after a delay longer than
# the daemon takes to restart; when those attempts are used up the
# allocation fails and the job's reschedule policy places it elsewhere.
#
# One daemon per node serves every task on it, of this job and of any
# other: one cache (one byte budget for the node, so a scene that several
# jobs read is fetched once), one output staging, one process. Several of
# these tasks fit on a node; each asks only for what its Blender uses. The
# cache, staging and metrics flags are the daemon's (its unit's
# /etc/jitfs/daemon.env), not the task's: `jitfs run` ignores them when
# attached. --job names the Nomad job: the tasks of one job on a node share
# one snapshot of the scene (pinned generations), held until the job's
# last task there detaches plus the daemon's --job-grace (10m). For a
# dispatched job NOMAD_JOB_ID is the dispatched child (one per dispatch),
# the same ID the output prefix uses.
#
# Preemption: when the node is preempted or the allocation stopped, Nomad
# sends kill_signal to `jitfs run`, which forwards it to Blender's process
# group, then flushes whatever Blender closed. kill_timeout must cover the
# render's last frame plus its upload: at 4 frames of 50 MB on a 100 MB/s
# uplink that is a few seconds, so 5m leaves a wide margin. A node that
# vanishes outright (a spot VM's 30 s notice running out) loses nothing
# either: closed frames are journalled in the daemon's staging directory
# and the daemon uploads them when it starts again on that node. Frames
# that were still being written are never uploaded as if complete (they
# are reported as interrupted).
#
# What the Nomad clients need (the job cannot set it for them):
#   - raw_exec enabled:  plugin "raw_exec" { config { enabled = true } }
#   - kill_timeout is silently capped by the client's max_kill_timeout,
#     30s by default: set  client { max_kill_timeout = "5m" }  or the
#     5m below is 30s and a slow last upload is cut off (its frames stay
#     staged on the node and the daemon uploads them).
#   - FUSE: nodes with /dev/fuse and fuse3 say so in their client meta,
#     client { meta { jitfs_fuse = "true" } }  (or `nomad node meta apply
#     jitfs_fuse=true`); a constraint below places tasks only there.
#   - the node daemon: nodes with jitfs-daemon.service enabled say so,
#     client { meta { jitfs_daemon = "true" } }  (or `nomad node meta
#     apply jitfs_daemon=true`); the other constraint places tasks only
#     there. The meta says the daemon is installed, not that it answers
#     this second: a task placed while it restarts exits 69 and is
#     restarted. Reserve the daemon's share of the node, e.g.
#     client { reserved { cpu = 2000  memory = 4096 } }, since Nomad does
#     not count it, and keep the cache and staging disk out of Nomad's.
#   - for the affinity below, the daemon run with --nomad-meta
#     (EXTRA_ARGS in /etc/jitfs/daemon.env) and, with ACLs on, a
#     NOMAD_TOKEN there with node:write.
#   - the Blender hook installed as /opt/jitfs/jitfs_prefetch.py (a copy
#     of blender-hooks/jitfs_prefetch.py, the path docs/blender.md uses).
#
# The output prefix is the dispatched job's ID and its frame range, never
# the allocation's ID: a task that Nomad retries or reschedules writes to
# the same prefix, so on the same node it resumes what its predecessor had
# staged, and elsewhere it overwrites the same objects instead of leaving
# a second copy.

job "render-sh010" {
  datacenters = ["dc1"]
  type        = "batch"

  parameterized {
    meta_required = ["frame_start", "frame_end"]
  }

  constraint {
    attribute = "${meta.jitfs_fuse}"
    value     = "true"
  }

  constraint {
    attribute = "${meta.jitfs_daemon}"
    value     = "true"
  }

  # Prefer the nodes whose cache already holds the scene: a node daemon
  # started with --nomad-meta publishes in its node metadata jitfs_sources
  # the keys of the sources it holds at least --nomad-meta-min-bytes of
  # (docs/affinity.md). The value is the key of the --mount source below,
  # printed by
  #   jitfs affinity-key gs://studio-show/show
  # at submit time (a submit script or template can run it; a source's key
  # never changes). Several sources: their keys, comma-separated, and
  # set_contains_any prefers a node holding any of them. An affinity, not
  # a constraint: a node holding nothing still takes the task when those
  # holding the scene are full, and a new scene's first tasks place
  # anywhere.
  affinity {
    attribute = "${meta.jitfs_sources}"
    operator  = "set_contains_any"
    value     = "f95195edce4f"
    weight    = 50
  }

  group "frames" {
    # Every failure, 75 and 69 included, is retried in place: the delay
    # is well over the daemon's restart (RestartSec=2 plus its recovery).
    restart {
      attempts = 2
      delay    = "15s"
      mode     = "fail"
    }

    task "blender" {
      # raw_exec: the task must see the daemon's FUSE mounts at its task
      # directory, which it does in the host's mount namespace. An isolated
      # driver would need the task directory's mounts propagated into it.
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/jitfs"
        args = [
          "run",
          "--daemon", "/run/jitfs/daemon.sock",
          "--job", "${NOMAD_JOB_ID}",
          "--mount", "gs://studio-show/show:${NOMAD_TASK_DIR}/show",
          "--output", "gs://studio-renders/jobs/${NOMAD_JOB_ID}/frames-${NOMAD_META_frame_start}-${NOMAD_META_frame_end}:${NOMAD_TASK_DIR}/out",
          "--prefetch", "${NOMAD_TASK_DIR}/show/shots/sh010/prefetch.txt",
          "--flush-timeout", "4m",
          "--log-format", "json",
          "--",
          # The prefetch hooks go before the scene (docs/blender.md).
          "blender", "-b", "-P", "/opt/jitfs/jitfs_prefetch.py",
          "${NOMAD_TASK_DIR}/show/shots/sh010/sh010.blend",
          "-o", "${NOMAD_TASK_DIR}/out/sh010_####", "-F", "OPEN_EXR",
          "-s", "${NOMAD_META_frame_start}", "-e", "${NOMAD_META_frame_end}",
          # As many threads as the cores reserved below: raw_exec does
          # not confine Blender, which would otherwise use every core on
          # a node it shares with other tasks.
          "-t", "4",
          "-a",
        ]
      }

      env {
        # The Blender hook names the job from it, as --job does.
        JITFS_JOB_ID = "${NOMAD_JOB_ID}"
      }

      # SIGTERM reaches jitfs run, which forwards it to Blender and then
      # flushes; SIGKILL follows after kill_timeout (capped by the
      # client's max_kill_timeout: see the top of this file).
      kill_signal  = "SIGTERM"
      kill_timeout = "5m"

      # One task's share of a node: tasks of many jobs share the node, its
      # daemon and its cache, so this is what Blender needs for one frame
      # range, not a whole node. The daemon's own CPU and memory are the
      # client's reserved block (see the top of this file).
      resources {
        cores  = 4
        memory = 8192
      }
    }
  }
}
