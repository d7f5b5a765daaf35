# A render task that reads its scene through jitfs and writes its frames to
# GCS through a jitfs output area. `jitfs run` mounts both, runs Blender,
# waits until every frame is durable in GCS, unmounts, and exits with
# Blender's exit status: 75 when frames could not be made durable (retry
# the task; the frames stay staged on the node and the next run on it
# uploads them), 69 when the mounts could not be set up.
#
# Preemption: when the node is preempted or the allocation stopped, Nomad
# sends kill_signal to `jitfs run`, which forwards it to Blender's process
# group, then flushes whatever Blender closed. kill_timeout must cover the
# render's last frame plus its upload: at 4 frames of 50 MB on a 100 MB/s
# uplink that is a few seconds, so 5m leaves a wide margin. A node that
# vanishes outright (a spot VM's 30 s notice running out) loses nothing
# either: closed frames are journalled in the staging directory and a
# `jitfs run` or `jitfs output` for the same prefix on that node resumes
# them. Frames that were still being written are never uploaded as if
# complete (they are reported as interrupted).
#
# What the Nomad clients need (the job cannot set it for them):
#   - raw_exec enabled:  plugin "raw_exec" { config { enabled = true } }
#   - kill_timeout is silently capped by the client's max_kill_timeout,
#     30s by default: set  client { max_kill_timeout = "5m" }  or the
#     5m below is 30s and a slow last upload is cut off (its frames stay
#     staged on the node and are resumed by the next task there).
#   - FUSE: nodes with /dev/fuse and fuse3 say so in their client meta,
#     client { meta { jitfs_fuse = "true" } }  (or `nomad node meta apply
#     jitfs_fuse=true`); the constraint below places tasks only there.
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

  group "frames" {
    restart {
      attempts = 2
      mode     = "fail"
    }

    task "blender" {
      # raw_exec: jitfs needs /dev/fuse and CAP_SYS_ADMIN to mount. The
      # exec driver's isolation would need /dev/fuse and the capability
      # passed through.
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/jitfs"
        args = [
          "run",
          "--mount", "gs://studio-show/show:${NOMAD_TASK_DIR}/show",
          "--output", "gs://studio-renders/jobs/${NOMAD_JOB_ID}/frames-${NOMAD_META_frame_start}-${NOMAD_META_frame_end}:${NOMAD_TASK_DIR}/out",
          "--prefetch", "${NOMAD_TASK_DIR}/show/shots/sh010/prefetch.txt",
          "--cache-dir", "/mnt/localssd/jitfs/cache",
          "--cache-size", "300GiB",
          "--staging-dir", "/mnt/localssd/jitfs/spool",
          "--staging-size", "50GiB",
          "--flush-timeout", "4m",
          "--log-format", "json",
          "--",
          # The prefetch hooks go before the scene (docs/blender.md).
          "blender", "-b", "-P", "/opt/jitfs/jitfs_prefetch.py",
          "${NOMAD_TASK_DIR}/show/shots/sh010/sh010.blend",
          "-o", "${NOMAD_TASK_DIR}/out/sh010_####", "-F", "OPEN_EXR",
          "-s", "${NOMAD_META_frame_start}", "-e", "${NOMAD_META_frame_end}", "-a",
        ]
      }

      env {
        JITFS_JOB_ID = "${NOMAD_JOB_ID}"
      }

      # SIGTERM reaches jitfs run, which forwards it to Blender and then
      # flushes; SIGKILL follows after kill_timeout (capped by the
      # client's max_kill_timeout: see the top of this file).
      kill_signal  = "SIGTERM"
      kill_timeout = "5m"

      # A cache directory serves one jitfs daemon at a time, so two of
      # these tasks on one node would not share --cache-dir: the task asks
      # for a whole 16-core node, and one runs per node.
      resources {
        cpu    = 16000
        memory = 32768
      }
    }
  }
}
