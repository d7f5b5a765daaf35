# Builds the test project of the Blender hook tests with Debian's Blender 3.4:
#
#   blender -b --factory-startup -noaudio --python-exit-code 1 \
#       -P blender-hooks/tests/make_fixture.py -- ROOT
#
# Every reference inside the .blend files is relative ("//"), so the tree can
# be uploaded to a bucket and rendered through a jitfs mount as it is. Tiny on
# purpose (32x32 renders, 16x16 textures): the tests are about which files a
# render opens and when, not about pixels.
#
#   scenes/shot.blend            frames 1-3, Cycles CPU, denoising off (Debian's
#                                build has no OpenImageDenoise)
#   lib/a/b/mid.blend            linked by the shot: object "Prop"
#   lib/deep/mat.blend           linked by mid.blend (a nested library in
#                                another directory): material "LibMat"
#   lib/deep/tex/lib_tex.png     used by LibMat, relative to lib/deep/mat.blend
#   tex/wood.png                 a plain image texture
#   tex/seq/plate.0001-0010.png  an image sequence
#   tex/seqb/plateb.1001-1010.png  a sequence shown with frame_offset 1000
#   tex/cyc/loop.0001-0002.png   a cyclic two-frame sequence
#   tex/udim/skin.1001-1002.png  UDIM tiles, both under the mesh's UVs
#   tex/missing.png              referenced, never created
#   (packed)                     a packed image: never a file
#   vdb/smoke.0001-0003.vdb      a volume sequence (written by OpenVDB's module)
#   fonts/DejaVuSans.ttf         a text object's font
#   audio/click.wav              a sequencer sound strip (a still render never opens it)
#   scenes/blendcache_shot/      the particle system's disk point cache, one file a frame
import os
import shutil
import struct
import sys
import wave

import bpy

FRAMES = 3


def root():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if len(argv) != 1:
        sys.exit("usage: blender -b --factory-startup -P make_fixture.py -- ROOT")
    return os.path.abspath(argv[0])


R = root()
# No .blend1 backups in the fixture tree.
bpy.context.preferences.filepaths.save_version = 0


def p(*parts):
    path = os.path.join(R, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def save_png(path, rgb):
    img = bpy.data.images.new(os.path.basename(path), 16, 16)
    img.pixels[:] = [c for _ in range(16 * 16) for c in (rgb[0], rgb[1], rgb[2], 1.0)]
    img.filepath_raw = path
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def reset():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0


def save(path):
    bpy.ops.wm.save_as_mainfile(filepath=path, relative_remap=True, compress=False)


def textured_material(name, image, image_user=None):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    if image_user:
        for k, v in image_user.items():
            setattr(tex.image_user, k, v)
    nt.links.new(tex.outputs["Color"], nt.nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def plane(name, x, mat=None, uv_scale=1.0):
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(x, 0, 0))
    ob = bpy.context.active_object
    ob.name = name
    if uv_scale != 1.0:
        for loop in ob.data.uv_layers.active.data:
            loop.uv = (loop.uv[0] * uv_scale, loop.uv[1])
    if mat:
        ob.data.materials.append(mat)
    return ob


def make_files():
    save_png(p("tex", "wood.png"), (0.6, 0.4, 0.2))
    for f in range(1, 11):
        save_png(p("tex", "seq", "plate.%04d.png" % f), (f / 10, 0.2, 0.2))
        save_png(p("tex", "seqb", "plateb.%04d.png" % (1000 + f)), (0.2, f / 10, 0.2))
    for f in (1, 2):
        save_png(p("tex", "cyc", "loop.%04d.png" % f), (0.1, 0.1, f / 2))
    for t in (1001, 1002):
        save_png(p("tex", "udim", "skin.%d.png" % t), (0.3, 0.3, (t - 1000) / 2))
    save_png(p("lib", "deep", "tex", "lib_tex.png"), (0.9, 0.9, 0.1))
    for font in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        shutil.copy(font, p("fonts", "DejaVuSans.ttf"))
    with wave.open(p("audio", "click.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", (i % 40 - 20) * 800) for i in range(800)))
    import pyopenvdb as vdb
    for f in range(1, FRAMES + 1):
        grid = vdb.FloatGrid()
        grid.name = "density"
        grid.gridClass = vdb.GridClass.FOG_VOLUME
        grid.transform = vdb.createLinearTransform(voxelSize=0.1)
        acc = grid.getAccessor()
        for x in range(8):
            for y in range(8):
                for z in range(8):
                    acc.setValueOn((x, y, z + f), 0.5)
        vdb.write(p("vdb", "smoke.%04d.vdb" % f), grids=[grid])


def make_libraries():
    # lib/deep/mat.blend: a material whose texture is relative to this library.
    reset()
    save(p("lib", "deep", "mat.blend"))
    img = bpy.data.images.load(p("lib", "deep", "tex", "lib_tex.png"))
    img.filepath = bpy.path.relpath(img.filepath)
    mat = textured_material("LibMat", img)
    mat.use_fake_user = True
    save(p("lib", "deep", "mat.blend"))

    # lib/a/b/mid.blend: an object using the nested library's material.
    reset()
    save(p("lib", "a", "b", "mid.blend"))
    with bpy.data.libraries.load(p("lib", "deep", "mat.blend"), link=True, relative=True) as (src, dst):
        dst.materials = ["LibMat"]
    bpy.ops.mesh.primitive_cube_add(size=0.5, location=(0, 0, 0))
    prop = bpy.context.active_object
    prop.name = "Prop"
    prop.data.materials.append(dst.materials[0])
    save(p("lib", "a", "b", "mid.blend"))


def make_shot():
    reset()
    path = p("scenes", "shot.blend")
    save(path)
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = 2
    sc.cycles.use_denoising = False
    sc.render.resolution_x = sc.render.resolution_y = 32
    sc.render.resolution_percentage = 100
    sc.frame_start, sc.frame_end = 1, FRAMES
    sc.render.image_settings.file_format = "PNG"

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    sc.collection.objects.link(cam)
    cam.location = (2.5, -9, 3)
    cam.rotation_euler = (1.25, 0, 0)
    sc.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sc.collection.objects.link(sun)

    def load(rel):
        img = bpy.data.images.load(p(*rel.split("/")), check_existing=True)
        img.filepath = bpy.path.relpath(img.filepath)
        return img

    plane("Wood", 0, textured_material("Wood", load("tex/wood.png")))
    seq = load("tex/seq/plate.0001.png")
    seq.source = "SEQUENCE"
    plane("Plate", 1, textured_material("Plate", seq, {"frame_duration": 10, "frame_start": 1}))
    seqb = load("tex/seqb/plateb.1001.png")
    seqb.source = "SEQUENCE"
    plane("PlateB", 2, textured_material("PlateB", seqb,
                                         {"frame_duration": 10, "frame_start": 1, "frame_offset": 1000}))
    cyc = load("tex/cyc/loop.0001.png")
    cyc.source = "SEQUENCE"
    plane("Loop", 3, textured_material("Loop", cyc, {"frame_duration": 2, "frame_start": 1, "use_cyclic": True}))
    udim = load("tex/udim/skin.1001.png")
    udim.source = "TILED"
    udim.filepath = "//../tex/udim/skin.<UDIM>.png"
    udim.tiles.new(1002)
    udim.reload()
    # UVs spanning u in [0, 2): both tiles are under the mesh, so Cycles loads both.
    plane("Skin", 4, textured_material("Skin", udim), uv_scale=2.0)
    missing = bpy.data.images.new("missing", 4, 4)
    missing.source = "FILE"
    missing.filepath = "//../tex/missing.png"
    plane("Missing", 5, textured_material("Missing", missing))
    packed = bpy.data.images.new("packed", 8, 8)
    packed.pixels[:] = [0.5] * (8 * 8 * 4)
    packed.pack()
    plane("Packed", 6, textured_material("Packed", packed))

    # The linked object from the library that links another library.
    with bpy.data.libraries.load(p("lib", "a", "b", "mid.blend"), link=True, relative=True) as (src, dst):
        dst.objects = ["Prop"]
    prop = dst.objects[0]
    sc.collection.objects.link(prop)

    vol = bpy.data.volumes.new("Smoke")
    vol.filepath = bpy.path.relpath(p("vdb", "smoke.0001.vdb"))
    vol.is_sequence = True
    vol.frame_start = 1
    vol.frame_duration = FRAMES
    vmat = bpy.data.materials.new("Smoke")
    vmat.use_nodes = True
    nt = vmat.node_tree
    nt.nodes.remove(nt.nodes["Principled BSDF"])
    pv = nt.nodes.new("ShaderNodeVolumePrincipled")
    nt.links.new(pv.outputs["Volume"], nt.nodes["Material Output"].inputs["Volume"])
    vol.materials.append(vmat)
    smoke = bpy.data.objects.new("Smoke", vol)
    sc.collection.objects.link(smoke)
    smoke.location = (0, 0, 1)

    font = bpy.data.fonts.load(p("fonts", "DejaVuSans.ttf"))
    font.filepath = bpy.path.relpath(font.filepath)
    txt = bpy.data.curves.new("Title", "FONT")
    txt.body = "jitfs"
    txt.font = font
    title = bpy.data.objects.new("Title", txt)
    sc.collection.objects.link(title)
    title.location = (0, 0, 2)

    snd = bpy.data.sounds.load(p("audio", "click.wav"))
    snd.filepath = bpy.path.relpath(snd.filepath)
    sc.sequence_editor_create()
    sc.sequence_editor.sequences.new_sound("click", p("audio", "click.wav"), channel=1, frame_start=1)

    # Particles with a disk point cache: scenes/blendcache_shot/sparks_00000N_00.bphys.
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(1, 0, 0.5))
    emitter = bpy.context.active_object
    emitter.name = "Emitter"
    pmod = emitter.modifiers.new("Sparks", "PARTICLE_SYSTEM")
    ps = pmod.particle_system
    ps.settings.count = 20
    ps.settings.frame_start, ps.settings.frame_end = 1, FRAMES
    ps.settings.lifetime = FRAMES + 1
    pc = ps.point_cache
    pc.use_disk_cache = True
    pc.name = "sparks"
    pc.frame_start, pc.frame_end = 1, FRAMES
    save(path)
    with bpy.context.temp_override(scene=sc, active_object=emitter, point_cache=pc):
        bpy.ops.ptcache.bake_all(bake=True)
    sc.frame_set(1)
    save(path)


make_files()
make_libraries()
make_shot()
print("fixture written to", R)
