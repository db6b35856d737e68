// This room's manifest is data the watchdog reads too (to spawn the room and
// check what it holds), so it lives in MdatpRoom/Manifests/EDRRoom.swift;
// this room installs it through RoomSandbox.enter.
import MdatpRoom

let manifest = Rooms.edr
