"""Writes a POV-Ray shot whose includes come from a show library, for build.sh:

    python3 gen_pov.py CORPUS

The library is layered as pipelines layer their search paths: the shot's
directory overrides the sequence's, which overrides the show's. POV-Ray is
run with `+L` for each layer, shot first, so every #include (and the image
map) is looked for layer by layer until found. The chain is five levels
deep: sh030.pov -> show.inc -> props.inc -> lamp.inc (the shot's override
of the show's lamp) -> lamp_shade.png. The show's own lamp.inc and
lighting.inc are overridden, so a render never reads them.

Everything is fixed text and a PNG from a fixed formula: the bytes are the
same on every run.
"""

import os
import struct
import sys
import zlib

FILES = {
    "povray/sh030/sh030.pov": """\
// sh030: a lamp and a chair in the sequence's room, lit by the shot.
#version 3.7;
#include "colors.inc"
#include "show.inc"
#include "set.inc"
#include "lighting.inc"

global_settings { assumed_gamma 1.0 }

camera {
  location <0.0, 1.6, -4.5>
  look_at <0.0, 0.9, 0.0>
  angle 55
}

object { Set_Room }
object { Prop_Lamp translate <-0.9, 0, 0.6> }
object { Prop_Chair rotate y*-25 translate <0.7, 0, 0.2> }
""",
    "povray/lib/show/show.inc": """\
// The show's entry point: materials first, then the props built from them.
#ifndef (Show_Inc_Temp)
#declare Show_Inc_Temp = version;
#include "materials.inc"
#include "props.inc"
#end
""",
    "povray/lib/show/materials.inc": """\
// Show materials.
#include "show_finishes.inc"
#declare M_Wood = texture {
  pigment { wood turbulence 0.08 color_map { [0 rgb <0.45, 0.28, 0.14>] [1 rgb <0.30, 0.17, 0.08>] } scale 0.05 }
  finish { F_Satin }
}
#declare M_Plaster = texture { pigment { rgb <0.80, 0.78, 0.72> } finish { F_Matte } }
#declare M_Brass = texture { pigment { rgb <0.78, 0.60, 0.25> } finish { F_Metal } }
#declare M_Fabric = texture { pigment { rgb <0.25, 0.32, 0.45> } normal { bumps 0.2 scale 0.01 } finish { F_Matte } }
""",
    "povray/lib/show/show_finishes.inc": """\
// Show finishes.
#declare F_Matte = finish { diffuse 0.85 ambient 0.0 }
#declare F_Satin = finish { diffuse 0.7 specular 0.25 roughness 0.02 ambient 0.0 }
#declare F_Metal = finish { diffuse 0.3 specular 0.7 roughness 0.005 reflection 0.25 metallic ambient 0.0 }
""",
    "povray/lib/show/props.inc": """\
// Show props.
#include "lamp.inc"
#include "chair.inc"
""",
    "povray/lib/show/lamp.inc": """\
// Show lamp (sh030 overrides it).
#declare Prop_Lamp = union {
  cylinder { <0, 0, 0>, <0, 1.5, 0>, 0.03 texture { M_Brass } }
  cone { <0, 1.35, 0>, 0.25, <0, 1.65, 0>, 0.12 open texture { M_Fabric } }
}
""",
    "povray/lib/show/chair.inc": """\
// Show chair.
#declare Chair_Leg = box { <-0.025, 0, -0.025>, <0.025, 0.45, 0.025> }
#declare Prop_Chair = union {
  object { Chair_Leg translate <-0.2, 0, -0.2> }
  object { Chair_Leg translate <0.2, 0, -0.2> }
  object { Chair_Leg translate <-0.2, 0, 0.2> }
  object { Chair_Leg translate <0.2, 0, 0.2> }
  box { <-0.23, 0.45, -0.23>, <0.23, 0.5, 0.23> }
  box { <-0.23, 0.5, 0.2>, <0.23, 1.0, 0.24> }
  texture { M_Wood }
}
""",
    "povray/lib/show/lighting.inc": """\
// Show default lighting (shots override it).
light_source { <2, 4, -3> color rgb 1 }
""",
    "povray/lib/seq/sq03/set.inc": """\
// sq03's set: a room, dressed.
#include "set_dressing.inc"
#declare Set_Room = union {
  plane { y, 0 texture { M_Wood scale 2 } }
  plane { z, 2.5 texture { M_Plaster } }
  plane { x, -3 texture { M_Plaster } }
  object { Set_Dressing }
}
""",
    "povray/lib/seq/sq03/set_dressing.inc": """\
// sq03's set dressing: a rug and a skirting board.
#declare Set_Dressing = union {
  box { <-1.2, 0, -0.8>, <1.2, 0.01, 1.0> texture { M_Fabric } }
  box { <-3, 0, 2.45>, <3, 0.12, 2.5> texture { M_Wood } }
}
""",
    "povray/lib/shots/sh030/lighting.inc": """\
// sh030 lighting: a warm key, a cool fill.
light_source { <-1.5, 3.5, -2.5> color rgb <1.0, 0.9, 0.75> area_light <0.6, 0, 0>, <0, 0, 0.6>, 3, 3 adaptive 1 jitter }
light_source { <3, 2, -4> color rgb <0.25, 0.3, 0.4> shadowless }
""",
    "povray/lib/shots/sh030/lamp.inc": """\
// sh030's lamp: the show's, with a printed shade.
#declare Prop_Lamp = union {
  cylinder { <0, 0, 0>, <0, 1.5, 0>, 0.03 texture { M_Brass } }
  cone { <0, 1.35, 0>, 0.25, <0, 1.65, 0>, 0.12 open
    texture { pigment { image_map { png "tex/lamp_shade.png" map_type 2 interpolate 2 } } finish { F_Matte } } }
}
""",
}


def png(path, w, h):
    # A small RGB stripe pattern, written with zlib so no imaging module is
    # needed and the bytes never change.
    rows = b""
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            stripe = ((x + y // 4) // 8) % 2
            row += bytes((200, 120 + 60 * stripe, 60)) if stripe else bytes((90, 40, 30))
        rows += bytes(row)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        out.write(chunk(b"IDAT", zlib.compress(rows, 9)))
        out.write(chunk(b"IEND", b""))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_pov.py CORPUS")
    root = sys.argv[1]
    for rel, text in FILES.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as out:
            out.write(text)
    tex = os.path.join(root, "povray", "lib", "show", "tex")
    os.makedirs(tex, exist_ok=True)
    png(os.path.join(tex, "lamp_shade.png"), 256, 128)


if __name__ == "__main__":
    main()
