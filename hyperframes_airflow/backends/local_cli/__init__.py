"""Run HyperFrames renders on this machine with the pinned `hyperframes` npm CLI.

Pure Python, no Airflow import: the local backend, the `doctor` command and the tests share it.
What it guarantees, and why:

- **Toolchain found, not assumed.** `find_toolchain()` locates Node >= 22.12 (puppeteer-core needs
  it), the CLI's own `bin` entry (run with that node, never through npx), Debian's chromium and
  ffmpeg/ffprobe; `Toolchain.problems()` names what is missing and the command that fixes it.
- **Variables never on a command line.** They go through `--variables-file`, written 0600 in a
  private 0700 temp dir that is deleted afterwards (argv is world-readable in `/proc`).
- **The whole render tree can be killed.** The CLI runs in its own session (`start_new_session`),
  but puppeteer launches Chrome *detached* (its own session), and Chrome's crashpad handlers
  double-fork to init, so a process-group kill alone leaves Chrome running (measured). Every
  process of a render therefore inherits a unique `HYPERFRAMES_AIRFLOW_RENDER_ID` environment
  cookie, and `kill_process_group` kills the group *and* every process carrying the cookie.
- **The template directory is not mutated.** The CLI writes `.hyperframes/video-state.json`
  (render history) into the project it renders, which would change the project's siteId and make
  concurrent renders of one site contend for a lock. Renders run from a hard-linked snapshot
  (copies across file systems) and with `HYPERFRAMES_HISTORY_ROOT` inside the private dir.
- **Atomic output.** The CLI writes to `.<stem>.partial-<token><suffix>` next to the output, and
  only a successful render is renamed into place.
- **Short errors.** A failure raises `LocalRenderError` whose message is the CLI's first
  meaningful line (e.g. `Variable "title" expected string, got number.`), with the last lines of
  output on `.log_tail` for debugging.

Output size is fixed by the composition's `data-width`/`data-height`: the local `render` verb has
no `--width/--height` (only `lambda render` has), just `--resolution` presets that supersample the
composition by an integer factor with the same aspect ratio.
"""

from hyperframes_airflow.backends.local_cli.errors import (
    LocalRenderError,
    LocalRenderResult,
    LocalRenderTimeout,
    LocalToolchainError,
)
from hyperframes_airflow.backends.local_cli.media import frame_rgb, probe_video
from hyperframes_airflow.backends.local_cli.output import clean_line, failure_message
from hyperframes_airflow.backends.local_cli.processes import (
    MARKER_ENV,
    all_pids,
    group_members,
    kill_process_group,
    marked_processes,
    proc_stat,
    render_marker,
)
from hyperframes_airflow.backends.local_cli.run import (
    FILE_FORMATS,
    build_render_args,
    render_local,
    snapshot_project,
)
from hyperframes_airflow.backends.local_cli.toolchain import (
    HYPERFRAMES_CLI_VERSION,
    INSTALL_COMMAND,
    MIN_NODE_VERSION,
    Toolchain,
    default_renderer_home,
    find_toolchain,
)

__all__ = [
    "FILE_FORMATS",
    "HYPERFRAMES_CLI_VERSION",
    "INSTALL_COMMAND",
    "MARKER_ENV",
    "MIN_NODE_VERSION",
    "LocalRenderError",
    "LocalRenderResult",
    "LocalRenderTimeout",
    "LocalToolchainError",
    "Toolchain",
    "all_pids",
    "build_render_args",
    "clean_line",
    "default_renderer_home",
    "failure_message",
    "find_toolchain",
    "frame_rgb",
    "group_members",
    "kill_process_group",
    "marked_processes",
    "probe_video",
    "proc_stat",
    "render_local",
    "render_marker",
    "snapshot_project",
]
