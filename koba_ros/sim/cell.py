"""SimCell: the PyBullet picking cell (table, four boxes, objects, Panda arm, overhead RGB-D camera), ROS-free.

sim_node, `koba pick` and the benchmarks all drive this one class. Physics runs at 240 Hz; the arm follows
joint trajectories the way a JointTrajectoryController does (sim/trajectory.py), the gripper takes a width.
Headless it uses PyBullet DIRECT and the CPU TinyRenderer; `gui=True` opens the PyBullet window.

Headless rendering composites: the table and boxes never move and the camera is fixed, so they are rendered
once (the static layer) and then made invisible to the renderer; each frame renders only the arm and the
objects and takes, per pixel, whichever layer is nearer. A z-buffer does exactly that, so the frame is the
same image as a full render (tested), for about a third of the TinyRenderer's time: most of its cost is
filling the pixels of the big table and box faces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet_data

from koba_ros.errors import KobaError
from koba_ros.sim import layout
from koba_ros.sim.bullet import pb
from koba_ros.sim.catalog import CatalogEntry, load_catalog
from koba_ros.sim.scene import Scene
from koba_ros.sim.trajectory import JointLimit, JointTrajectory, TrajectoryFollower, validate

TIME_STEP = 1.0 / 240.0
SOLVER_ITERATIONS = 20
PANDA_URDF = "franka_panda/panda.urdf"
ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
GRIPPER_MAX_WIDTH = 0.08
GRIPPER_FORCE = 60.0          # N per finger; friction holds the object, there is no attachment cheat
FRICTION = 1.2
OBJECT_MASS = 0.08        # kg: light household things (pybullet_data's soccer ball weighs 10 kg)
# Tucked next to the base and low: out of the camera's view of the boxes.
HOME = (0.0, -1.2, 0.0, -2.9, 0.0, 1.75, 0.785)
TABLE_SIZE = (1.3, 1.0, 0.04)
TABLE_CENTRE = (0.35, 0.0)
BOX_RGBA = (0.72, 0.58, 0.40, 1.0)
TABLE_RGBA = (0.45, 0.45, 0.48, 1.0)


@dataclass
class Pose:
    """Where everything that moves is: enough to render the cell in another process (render_process.py)."""
    time: float
    objects: list[tuple[tuple[float, ...], tuple[float, ...]]]   # base position, quaternion per scene object
    joints: list[float]                                          # every Panda joint's position


@dataclass
class Frame:
    rgb: np.ndarray          # HxWx3 uint8
    depth: np.ndarray        # HxW float32, metres along the optical axis
    K: np.ndarray            # 3x3 intrinsics
    camera_pose: np.ndarray  # 4x4 optical frame in base_link
    stamp: float             # sim time, seconds


class SimCell:
    def __init__(self, scene: Scene, gui: bool = False, settle_s: float = 0.6, static_layer: bool = True):
        """static_layer=False renders everything every frame (the slower path; the GUI always does)."""
        self.gui = gui
        self.client = pb.connect(pb.GUI if gui else pb.DIRECT)
        if self.client < 0:
            raise KobaError("cannot start PyBullet (no display for the GUI? use headless)")
        self.scene = scene
        self.time = 0.0
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        pb.setGravity(0, 0, -9.81, physicsClientId=self.client)
        pb.setTimeStep(TIME_STEP, physicsClientId=self.client)
        # 20 solver iterations instead of PyBullet's 50: physics at least 2x cheaper; bench/pick.py measures grasps.
        pb.setPhysicsEngineParameter(numSolverIterations=SOLVER_ITERATIONS, physicsClientId=self.client)
        self._build_table_and_boxes()
        self.K = layout.camera_intrinsics()
        self.camera_pose = layout.camera_pose()
        self.static_layer = self._render_static_layer() if static_layer and not gui else None
        self._load_panda()
        catalog = load_catalog()
        self.object_ids = [self._spawn(catalog[o.name], o) for o in scene.objects]
        self.step(int(settle_s / TIME_STEP))

    # --- world ------------------------------------------------------------------------------------
    def _static_box(self, half_extents, position, rgba) -> int:
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half_extents, physicsClientId=self.client)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba, physicsClientId=self.client)
        return pb.createMultiBody(0, col, vis, position, physicsClientId=self.client)

    def _build_table_and_boxes(self) -> None:
        hx, hy, hz = (s / 2 for s in TABLE_SIZE)
        self.table = self._static_box((hx, hy, hz), (*TABLE_CENTRE, -hz), TABLE_RGBA)
        inner, wall = layout.BOX_INNER, layout.BOX_WALL
        floor_t, wall_h = layout.BOX_FLOOR_THICKNESS, layout.BOX_WALL_HEIGHT
        outer = inner + 2 * wall
        self.boxes = {}
        for name, region in layout.box_regions().items():
            cx, cy = region.centre
            parts = [self._static_box((outer / 2, outer / 2, floor_t / 2), (cx, cy, floor_t / 2), BOX_RGBA)]
            z = floor_t + wall_h / 2
            for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                half = (wall / 2, outer / 2, wall_h / 2) if sx else (outer / 2, wall / 2, wall_h / 2)
                offset = (inner + wall) / 2
                parts.append(self._static_box(half, (cx + sx * offset, cy + sy * offset, z), BOX_RGBA))
            self.boxes[name] = parts

    def _load_panda(self) -> None:
        self.panda = pb.loadURDF(PANDA_URDF, useFixedBase=True, physicsClientId=self.client)
        self.joint_index, self.limits = {}, {}
        for j in range(pb.getNumJoints(self.panda, physicsClientId=self.client)):
            info = pb.getJointInfo(self.panda, j, physicsClientId=self.client)
            name = info[1].decode()
            self.joint_index[name] = j
            if name in ARM_JOINTS:
                self.limits[name] = JointLimit(info[8], info[9], info[11])
            if name in FINGER_JOINTS:
                # Friction anchors keep a grasped object from creeping out between the fingers.
                pb.changeDynamics(self.panda, j, lateralFriction=FRICTION, spinningFriction=0.01, frictionAnchor=True,
                                  physicsClientId=self.client)
        self.arm = [self.joint_index[n] for n in ARM_JOINTS]
        self.fingers = [self.joint_index[n] for n in FINGER_JOINTS]
        self.max_force = [pb.getJointInfo(self.panda, j, physicsClientId=self.client)[10] for j in self.arm]
        for j, q in zip(self.arm, HOME, strict=True):
            pb.resetJointState(self.panda, j, q, physicsClientId=self.client)
        for j in self.fingers:
            pb.resetJointState(self.panda, j, GRIPPER_MAX_WIDTH / 2, physicsClientId=self.client)
        self.follower = TrajectoryFollower(ARM_JOINTS, np.array(HOME))
        self.gripper_target = GRIPPER_MAX_WIDTH

    def _spawn(self, entry: CatalogEntry, obj) -> int:
        region = layout.box_regions()[obj.box]
        x, y = region.offset_to_xy(*obj.xy)
        rest = pb.getQuaternionFromEuler(entry.rest_rpy)
        turn = pb.getQuaternionFromEuler((0, 0, obj.yaw))
        _, orientation = pb.multiplyTransforms((0, 0, 0), turn, (0, 0, 0), rest)
        c = self.client
        if entry.urdf:
            body = pb.loadURDF(entry.urdf, (x, y, 0.3), orientation, globalScaling=entry.scale, physicsClientId=c)
        else:
            col, vis = self._primitive_shapes(entry)
            body = pb.createMultiBody(OBJECT_MASS, col, vis, (x, y, 0.3), orientation, physicsClientId=c)
        pb.changeVisualShape(body, -1, rgbaColor=entry.rgba, physicsClientId=c)
        # Resting objects sleep (no contact solving) until something touches them: 40 objects stay cheap.
        pb.changeDynamics(body, -1, mass=OBJECT_MASS, lateralFriction=FRICTION, spinningFriction=0.002,
                          rollingFriction=0.002, activationState=pb.ACTIVATION_STATE_ENABLE_SLEEPING, physicsClientId=c)
        # Centre the object's footprint on (x, y) and put its lowest point just above the box floor, whatever
        # the mesh's own origin (an off-centre origin would start a mesh inside a wall).
        lo, hi = pb.getAABB(body, physicsClientId=c)
        dx, dy = x - (lo[0] + hi[0]) / 2, y - (lo[1] + hi[1]) / 2
        pb.resetBasePositionAndOrientation(body, (x + dx, y + dy, 0.3 - lo[2] + region.floor_z + 0.002), orientation,
                                           physicsClientId=c)
        return body

    def _primitive_shapes(self, entry: CatalogEntry) -> tuple[int, int]:
        c, s = self.client, entry.size
        if entry.primitive == "box":
            half = [v / 2 for v in s]
            return (pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c),
                    pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c))
        if entry.primitive == "sphere":
            return (pb.createCollisionShape(pb.GEOM_SPHERE, radius=s[0] / 2, physicsClientId=c),
                    pb.createVisualShape(pb.GEOM_SPHERE, radius=s[0] / 2, physicsClientId=c))
        if entry.primitive == "cylinder":
            return (pb.createCollisionShape(pb.GEOM_CYLINDER, radius=s[0] / 2, height=s[1], physicsClientId=c),
                    pb.createVisualShape(pb.GEOM_CYLINDER, radius=s[0] / 2, length=s[1], physicsClientId=c))
        if entry.primitive == "mug":   # a cylinder with a handle on its side
            r, h = s[0] / 2, s[1]
            handle = [0.006, 0.012, h * 0.3]
            types, kw = [pb.GEOM_CYLINDER, pb.GEOM_BOX], dict(halfExtents=[[0, 0, 0], handle], radii=[r, 0],
                                                               collisionFramePositions=[[0, 0, 0], [r + 0.006, 0, 0]])
            col = pb.createCollisionShapeArray(types, lengths=[h, 0], physicsClientId=c, **kw)
            vis = pb.createVisualShapeArray(types, lengths=[h, 0], radii=[r, 0], halfExtents=[[0, 0, 0], handle],
                                            visualFramePositions=[[0, 0, 0], [r + 0.006, 0, 0]], physicsClientId=c)
            return col, vis
        raise KobaError(f"catalog entry {entry.name}: unknown primitive {entry.primitive!r}")

    # --- time ---------------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        c = self.client
        for _ in range(n):
            q, qd = self.follower.target(self.time)
            pb.setJointMotorControlArray(self.panda, self.arm, pb.POSITION_CONTROL, targetPositions=q,
                                         targetVelocities=qd, forces=self.max_force, physicsClientId=c)
            half = self.gripper_target / 2
            pb.setJointMotorControlArray(self.panda, self.fingers, pb.POSITION_CONTROL, targetPositions=[half, half],
                                         forces=[GRIPPER_FORCE] * 2, physicsClientId=c)
            pb.stepSimulation(physicsClientId=c)
            self.time += TIME_STEP

    # --- arm and gripper ----------------------------------------------------------------------------
    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Names, positions, velocities of the arm joints and both fingers."""
        names = [*ARM_JOINTS, *FINGER_JOINTS]
        states = pb.getJointStates(self.panda, [*self.arm, *self.fingers], physicsClientId=self.client)
        return names, np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def arm_positions(self) -> np.ndarray:
        return self.joint_state()[1][:7]

    def follow(self, traj: JointTrajectory) -> None:
        """Start following a trajectory (KobaError, arm untouched, when it breaks a limit)."""
        current = self.arm_positions()
        validate(traj, self.limits, current[[ARM_JOINTS.index(n) for n in traj.joint_names]])
        self.follower.start(traj, self.time, current)

    def stop_arm(self) -> None:
        """Hold where the arm is now (what a controller does on an empty trajectory or a cancel)."""
        self.follower.hold(self.time, self.arm_positions())

    def trajectory_done(self) -> bool:
        return self.follower.done(self.time)

    def set_gripper(self, width: float) -> None:
        if not math.isfinite(width):
            raise KobaError(f"gripper width must be a number, got {width}")
        self.gripper_target = float(np.clip(width, 0.0, GRIPPER_MAX_WIDTH))

    def gripper_width(self) -> float:
        return float(sum(self.joint_state()[1][7:]))

    def tool_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grasp-target position and quaternion (xyzw) in base_link."""
        state = pb.getLinkState(self.panda, self.joint_index["panda_grasptarget_hand"], computeForwardKinematics=True,
                                physicsClientId=self.client)
        return np.array(state[4]), np.array(state[5])

    # --- ground truth -------------------------------------------------------------------------------
    def object_position(self, index: int) -> np.ndarray:
        self._check_index(index)
        return np.array(pb.getBasePositionAndOrientation(self.object_ids[index], physicsClientId=self.client)[0])

    def object_aabb(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_index(index)
        lo, hi = pb.getAABB(self.object_ids[index], physicsClientId=self.client)
        return np.array(lo), np.array(hi)

    def object_box(self, index: int) -> str | None:
        """The box object `index` rests in now, or None.

        In a box: its centre is inside the box's walls, its bottom is below the top of the walls (on the floor
        or on other objects there), and the gripper is not touching it.
        """
        lo, hi = self.object_aabb(index)
        centre = (lo + hi) / 2
        if lo[2] > layout.BOX_FLOOR_THICKNESS + layout.BOX_WALL_HEIGHT:
            return None
        if pb.getContactPoints(self.object_ids[index], self.panda, physicsClientId=self.client):
            return None
        return layout.box_at(centre[0], centre[1])

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.object_ids):
            raise KobaError(f"object index {index} is not in the scene (0..{len(self.object_ids) - 1})")

    # --- camera -------------------------------------------------------------------------------------
    def _camera_image(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB (uint8) and depth (metres, float32) of what the renderer sees now."""
        w, h = layout.CAMERA_WIDTH, layout.CAMERA_HEIGHT
        eye = self.camera_pose[:3, 3]
        forward, down = self.camera_pose[:3, 2], self.camera_pose[:3, 1]
        view = pb.computeViewMatrix(eye, eye + forward, -down)
        proj = pb.computeProjectionMatrixFOV(layout.CAMERA_VFOV_DEG, w / h, layout.CAMERA_NEAR, layout.CAMERA_FAR)
        renderer = pb.ER_BULLET_HARDWARE_OPENGL if self.gui else pb.ER_TINY_RENDERER
        _, _, rgba, zbuf, _ = pb.getCameraImage(w, h, view, proj, renderer=renderer,
                                                flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3].copy()
        near, far = layout.CAMERA_NEAR, layout.CAMERA_FAR
        zbuf = np.asarray(zbuf, dtype=np.float32).reshape(h, w)
        return rgb, (far * near / (far - (far - near) * zbuf)).astype(np.float32)

    def _render_static_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """Render the table and boxes (all there is so far), then hide them from the renderer (not from physics)."""
        layer = self._camera_image()
        for body in [self.table, *(part for parts in self.boxes.values() for part in parts)]:
            pb.changeVisualShape(body, -1, rgbaColor=(0, 0, 0, 0), physicsClientId=self.client)
        return layer

    def render(self) -> Frame:
        rgb, depth = self._camera_image()
        if self.static_layer is not None:    # headless: arm and objects over the pre-rendered table and boxes
            static_rgb, static_depth = self.static_layer
            behind = static_depth < depth
            rgb[behind], depth[behind] = static_rgb[behind], static_depth[behind]
        return Frame(rgb, depth, self.K.copy(), self.camera_pose.copy(), self.time)

    def pose(self) -> Pose:
        c = self.client
        objects = [pb.getBasePositionAndOrientation(b, physicsClientId=c) for b in self.object_ids]
        joints = [s[0] for s in pb.getJointStates(self.panda, range(pb.getNumJoints(self.panda, physicsClientId=c)),
                                                  physicsClientId=c)]
        return Pose(self.time, objects, joints)

    def set_pose(self, pose: Pose) -> None:
        """Put every moving body where `pose` says (no physics: for rendering a pose from another cell)."""
        c = self.client
        for body, (position, orientation) in zip(self.object_ids, pose.objects, strict=True):
            pb.resetBasePositionAndOrientation(body, position, orientation, physicsClientId=c)
        for j, q in enumerate(pose.joints):
            pb.resetJointState(self.panda, j, q, physicsClientId=c)
        self.time = pose.time

    def close(self) -> None:
        if self.client is not None and pb.isConnected(self.client):
            pb.disconnect(self.client)
        self.client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
