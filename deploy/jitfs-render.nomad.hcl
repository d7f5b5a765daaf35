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

job "render-sh010" {
  datacenters = ["dc1"]
  type        = "batch"

  parameterized {
    meta_required = ["frame_start", "frame_end"]
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
          "--output", "gs://studio-renders/jobs/${NOMAD_JOB_ID}/${NOMAD_ALLOC_ID}:${NOMAD_TASK_DIR}/out",
          "--prefetch", "${NOMAD_TASK_DIR}/show/shots/sh010/prefetch.txt",
          "--cache-dir", "/mnt/localssd/jitfs/cache",
          "--cache-size", "300GiB",
          "--staging-dir", "/mnt/localssd/jitfs/spool",
          "--staging-size", "50GiB",
          "--flush-timeout", "4m",
          "--log-format", "json",
          "--",
          # The prefetch hooks go before the scene (docs/blender.md).
          "blender", "-b", "-P", "/opt/jitfs/blender-hooks/jitfs_prefetch.py",
          "${NOMAD_TASK_DIR}/show/shots/sh010/sh010.blend",
          "-o", "${NOMAD_TASK_DIR}/out/sh010_####", "-F", "OPEN_EXR",
          "-s", "${NOMAD_META_frame_start}", "-e", "${NOMAD_META_frame_end}", "-a",
        ]
      }

      env {
        JITFS_JOB_ID = "${NOMAD_JOB_ID}"
      }

      # SIGTERM reaches jitfs run, which forwards it to Blender and then
      # flushes; SIGKILL follows after kill_timeout.
      kill_signal  = "SIGTERM"
      kill_timeout = "5m"

      resources {
        cpu    = 16000
        memory = 32768
      }
    }
  }
}
