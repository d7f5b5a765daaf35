"""Writes the show's OpenColorIO setup into CORPUS/ocio, for build.sh:

    python3 gen_ocio.py CORPUS

config.ocio names its LUTs by file name only and finds them through its
search path, as show configs do: `luts` for the show's LUTs, then
`grades/${SHOT}` for the shot's grade (SHOT defaults to sh020 in the
config's environment). Every file is computed from fixed formulas, so the
bytes are the same on every run.

The review colour space chains four files: a 1D log curve (.spi1d), the
shot's CDL grade (.cc, looked for in `luts` first, where it is not), a 3D
film look (.cube, 17^3 as show looks often are) and a 1D display curve
(.spi1d). OCIO loads them when oiiotool builds the processor, in every
process.
"""

import math
import os
import sys

CONFIG = """\
ocio_profile_version: 2

environment:
  SHOT: sh020

search_path: "luts:grades/${SHOT}"
strictparsing: true
luma: [0.2126, 0.7152, 0.0722]

roles:
  default: lin_rec709
  scene_linear: lin_rec709
  reference: lin_rec709
  data: raw
  color_timing: log_film
  compositing_log: log_film
  color_picking: srgb_display

file_rules:
  - !<Rule> {name: Default, colorspace: default}

displays:
  sRGB:
    - !<View> {name: Review, colorspace: review_srgb}
    - !<View> {name: Raw, colorspace: raw}

active_displays: [sRGB]
active_views: [Review, Raw]

colorspaces:
  - !<ColorSpace>
    name: lin_rec709
    family: scene
    bitdepth: 16f
    description: Scene-linear Rec.709 primaries (the plates)
    isdata: false

  - !<ColorSpace>
    name: raw
    family: utility
    isdata: true

  - !<ColorSpace>
    name: log_film
    family: scene
    description: The show's log encoding, where grades and looks apply
    from_scene_reference: !<FileTransform> {src: lin_to_log.spi1d, interpolation: linear}

  - !<ColorSpace>
    name: srgb_display
    family: display
    from_scene_reference: !<FileTransform> {src: srgb_display.spi1d, interpolation: linear}

  - !<ColorSpace>
    name: review_srgb
    family: display
    description: Dailies review - shot grade, show film look, sRGB display
    from_scene_reference: !<GroupTransform>
      children:
        - !<FileTransform> {src: lin_to_log.spi1d, interpolation: linear}
        - !<FileTransform> {src: "${SHOT}.cc"}
        - !<FileTransform> {src: film_look.cube, interpolation: tetrahedral}
        - !<FileTransform> {src: lin_to_log.spi1d, interpolation: linear, direction: inverse}
        - !<FileTransform> {src: srgb_display.spi1d, interpolation: linear}
"""

GRADE = """\
<?xml version="1.0" encoding="UTF-8"?>
<ColorCorrection id="{shot}_grade">
  <Description>{shot} dailies grade</Description>
  <SOPNode>
    <Slope>{slope}</Slope>
    <Offset>{offset}</Offset>
    <Power>{power}</Power>
  </SOPNode>
  <SatNode>
    <Saturation>{sat}</Saturation>
  </SatNode>
</ColorCorrection>
"""

LOG_MAX = 16.0  # linear range the log curve covers


def lin_to_log(x):
    return math.log2(max(x, 0.0) * 64.0 + 1.0) / math.log2(LOG_MAX * 64.0 + 1.0)


def srgb(x):
    x = min(max(x, 0.0), 1.0)
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def spi1d(path, lo, hi, n, f):
    with open(path, "w") as out:
        out.write("Version 1\nFrom %g %g\nLength %d\nComponents 1\n{\n" % (lo, hi, n))
        for i in range(n):
            out.write("    %.7f\n" % f(lo + (hi - lo) * i / (n - 1)))
        out.write("}\n")


def film_look(path, n):
    # A gentle filmic S-curve with warm highlights and cool shadows, in the
    # log space: enough structure that the LUT is not an identity.
    def curve(v):
        return 0.5 + 0.5 * math.tanh(2.2 * (v - 0.5)) / math.tanh(1.1)

    with open(path, "w") as out:
        out.write('TITLE "film look"\n# sh020 show look, log_film in and out\nLUT_3D_SIZE %d\n' % n)
        out.write("DOMAIN_MIN 0.0 0.0 0.0\nDOMAIN_MAX 1.0 1.0 1.0\n")
        for b in range(n):
            for g in range(n):
                for r in range(n):
                    rgb = [r / (n - 1), g / (n - 1), b / (n - 1)]
                    luma = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
                    warm = 0.03 * (luma - 0.5)
                    vals = [curve(rgb[0]) + warm, curve(rgb[1]), curve(rgb[2]) - warm]
                    out.write("%.6f %.6f %.6f\n" % tuple(min(max(v, 0.0), 1.0) for v in vals))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_ocio.py CORPUS")
    root = os.path.join(sys.argv[1], "ocio")
    os.makedirs(os.path.join(root, "luts"), exist_ok=True)
    os.makedirs(os.path.join(root, "grades", "sh020"), exist_ok=True)
    with open(os.path.join(root, "config.ocio"), "w") as out:
        out.write(CONFIG)
    spi1d(os.path.join(root, "luts", "lin_to_log.spi1d"), 0.0, LOG_MAX, 4096, lin_to_log)
    spi1d(os.path.join(root, "luts", "srgb_display.spi1d"), 0.0, 1.0, 4096, srgb)
    film_look(os.path.join(root, "luts", "film_look.cube"), 17)
    with open(os.path.join(root, "grades", "sh020", "sh020.cc"), "w") as out:
        out.write(GRADE.format(shot="sh020", slope="1.04 1.0 0.95", offset="0.01 0.0 -0.005",
                               power="1.0 1.02 1.05", sat="0.92"))


if __name__ == "__main__":
    main()
