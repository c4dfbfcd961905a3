#!/usr/bin/env python3
"""Writes the drone flight controller's design files into `files/`: the KiCad 9 project of the
board `twin.yaml` describes (a root schematic and four sheets in `kicad/sheets/`, a placed 6-layer
36 × 36 mm board, the BOM as `kicad-cli sch export bom` writes it) and the enclosure STEP.

    python templates/drone-flight-controller/generate.py        # (re)writes the files
    python templates/drone-flight-controller/generate.py --check  # exit 1 if a file would change

Every byte is a function of the tables below: UUIDs are uuid5 of names, the STEP header carries
a fixed time stamp, so running it twice gives the same files (a test holds it). Part values,
MPNs and references are those of the BOMItems and DesignElements in twin.yaml.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "files"
PROJECT = "flight-controller"
NS = uuid.UUID("6f1c0d52-8a43-4e55-9c39-0f7f6c3b2a10")
MODELS = "${KICAD9_3DMODEL_DIR}"
BOARD_W = BOARD_H = 36.0
ORIGIN = (100.0, 100.0)          # board centre on the page
HOLE_PITCH = 30.5                # the 30.5 × 30.5 mm stack pattern


def uid(*names: str) -> str:
    return str(uuid.uuid5(NS, "/".join(names)))


# ---- the parts ------------------------------------------------------------------------------------

@dataclass
class Part:
    ref: str
    sheet: str                    # "" for the root sheet
    value: str
    footprint: str                # "" for parts not on the board (battery, motors, ...)
    mpn: str
    manufacturer: str
    description: str
    pins: list[tuple[str, str, str]]          # (number, name, electrical type)
    nets: dict[str, str] = field(default_factory=dict)   # pin number → net
    at: tuple[float, float, float] = (0.0, 0.0, 0.0)     # board x, y (mm from the centre), rotation
    package: str = ""             # pad pattern: see PADS

    @property
    def on_board(self) -> bool:
        return bool(self.footprint)


STM32_PINS = [
    "VBAT", "PC13", "PC14", "PC15", "PH0", "PH1", "NRST", "PC0", "PC1", "PC2", "PC3", "VSSA", "VDDA", "PA0",
    "PA1", "PA2", "PA3", "VSS", "VDD", "PA4", "PA5", "PA6", "PA7", "PC4", "PC5", "PB0", "PB1", "PB2", "PB10",
    "PB11", "VCAP1", "VDD", "PB12", "PB13", "PB14", "PB15", "PC6", "PC7", "PC8", "PC9", "PA8", "PA9", "PA10",
    "PA11", "PA12", "PA13", "VCAP2", "VDD", "PA14", "PA15", "PC10", "PC11", "PC12", "PD2", "PB3", "PB4", "PB5",
    "PB6", "PB7", "BOOT0", "PB8", "PB9", "VSS", "VDD"]
MCU_NETS = {  # the MCU's pin → net (the U1-P.. DesignElements of twin.yaml name the first eight)
    "PA4": "IMU_CS", "PA5": "IMU_SCK", "PA6": "IMU_MISO", "PA7": "IMU_MOSI", "PB6": "BARO_SCL",
    "PB7": "BARO_SDA", "PA15": "FLASH_CS", "PC4": "VBAT_SENSE", "PB3": "FLASH_SCK", "PB4": "FLASH_MISO",
    "PB5": "FLASH_MOSI", "PC6": "MOTOR1", "PC7": "MOTOR2", "PC8": "MOTOR3", "PC9": "MOTOR4", "PA2": "GPS_RX",
    "PA3": "GPS_TX", "PA9": "RC_RX", "PA10": "RC_TX", "PA13": "SWDIO", "PA14": "SWCLK", "NRST": "NRST",
    "PH0": "OSC_IN", "PH1": "OSC_OUT", "BOOT0": "BOOT0", "VBAT": "+3V3", "VDD": "+3V3", "VDDA": "+3V3",
    "VSS": "GND", "VSSA": "GND", "VCAP1": "VCAP1", "VCAP2": "VCAP2"}


def _power_type(name: str) -> str:
    return "power_in" if name.startswith(("VDD", "VSS", "VBAT", "VCAP")) else "bidirectional"


def two(a: str, b: str, kind: str = "passive") -> list[tuple[str, str, str]]:
    return [("1", "~", kind), ("2", "~", kind)]


def parts() -> list[Part]:
    p: list[Part] = []
    mcu_pins = [(str(i + 1), n, _power_type(n)) for i, n in enumerate(STM32_PINS)]
    p.append(Part("U1", "MCU", "STM32F405RGT6", "Package_QFP:LQFP-64_10x10mm_P0.5mm", "STM32F405RGT6",
                  "STMicroelectronics", "flight controller MCU: Arm Cortex-M4F at 168 MHz running the flight stack",
                  mcu_pins, {str(i + 1): MCU_NETS[n] for i, n in enumerate(STM32_PINS) if n in MCU_NETS},
                  (0.0, 1.5, 45.0), "qfp64"))
    p.append(Part("Y1", "MCU", "8MHz", "Crystal:Crystal_SMD_3225-4Pin_3.2x2.5mm", "ABM8-8.000MHZ-B2-T",
                  "Abracon", "8 MHz crystal for the MCU's clock", [("1", "1", "passive"), ("2", "GND", "passive"),
                                                                    ("3", "3", "passive"), ("4", "GND", "passive")],
                  {"1": "OSC_IN", "2": "GND", "3": "OSC_OUT", "4": "GND"}, (-9.0, 1.5, 90.0), "xtal3225"))
    p.append(Part("R5", "MCU", "10k", "Resistor_SMD:R_0402_1005Metric", "RC0402FR-0710KL", "YAGEO",
                  "pull-downs: BOOT0, and the battery divider's low side", two("1", "2"), {"1": "BOOT0", "2": "GND"},
                  (6.5, 8.0, 0.0), "0402"))
    for i, (ref, x, y, rot) in enumerate((("C7", -6.5, -5.0, 0), ("C8", 6.5, -5.0, 0), ("C9", -6.5, 8.0, 0),
                                          ("C10", 8.5, 2.0, 90))):
        p.append(Part(ref, "MCU", "100nF", "Capacitor_SMD:C_0402_1005Metric", "GRM155R71H104KE14D", "Murata",
                      "100 nF decoupling capacitors at every IC supply pin", two("1", "2"),
                      {"1": "+3V3", "2": "GND"}, (x, y, rot), "0402"))
    p.append(Part("C11", "MCU", "100nF", "Capacitor_SMD:C_0402_1005Metric", "GRM155R71H104KE14D", "Murata",
                  "100 nF decoupling capacitors at every IC supply pin", two("1", "2"), {"1": "VCAP1", "2": "GND"},
                  (-8.5, -2.0, 90.0), "0402"))
    # sensors and flash
    imu = [("1", "AP_SDO", "output"), ("2", "RESV", "passive"), ("3", "RESV", "passive"), ("4", "INT1", "output"),
           ("5", "VDDIO", "power_in"), ("6", "GND", "power_in"), ("7", "RESV", "passive"), ("8", "VDD", "power_in"),
           ("9", "INT2", "output"), ("10", "RESV", "passive"), ("11", "RESV", "passive"), ("12", "AP_CS", "input"),
           ("13", "AP_SCL", "input"), ("14", "AP_SDI", "input")]
    p.append(Part("U2", "Sensors", "ICM-42688-P", "Package_LGA:LGA-14_3x2.5mm_P0.5mm_LayoutBorder3x4y",
                  "ICM-42688-P", "TDK InvenSense", "6-axis IMU: 3-axis gyroscope and accelerometer for attitude estimation",
                  imu, {"1": "IMU_MISO", "5": "+3V3", "6": "GND", "8": "+3V3", "12": "IMU_CS", "13": "IMU_SCK",
                        "14": "IMU_MOSI"}, (-1.0, -9.0, 0.0), "lga14"))
    baro = [("1", "VDDIO", "power_in"), ("2", "SCK", "input"), ("3", "VSS", "power_in"), ("4", "SDI", "bidirectional"),
            ("5", "SDO", "output"), ("6", "CSB", "input"), ("7", "INT", "output"), ("8", "VSS", "power_in"),
            ("9", "VSS", "power_in"), ("10", "VDD", "power_in")]
    p.append(Part("U3", "Sensors", "BMP388", "Package_LGA:Bosch_LGA-10_2x2mm_P0.275x0.250mm", "BMP388",
                  "Bosch Sensortec", "barometric pressure sensor for altitude hold", baro,
                  {"1": "+3V3", "2": "BARO_SCL", "3": "GND", "4": "BARO_SDA", "5": "GND", "6": "+3V3", "8": "GND",
                   "9": "GND", "10": "+3V3"}, (9.5, -9.0, 0.0), "lga10"))
    flash = [("1", "~{CS}", "input"), ("2", "DO", "output"), ("3", "~{WP}", "input"), ("4", "GND", "power_in"),
             ("5", "DI", "input"), ("6", "CLK", "input"), ("7", "~{HOLD}", "input"), ("8", "VCC", "power_in")]
    p.append(Part("U6", "Sensors", "W25Q128JVSIQ", "Package_SO:SOIC-8_5.23x5.23mm_P1.27mm", "W25Q128JVSIQ", "Winbond",
                  "128 Mbit SPI NOR flash for blackbox flight logs", flash,
                  {"1": "FLASH_CS", "2": "FLASH_MISO", "3": "+3V3", "4": "GND", "5": "FLASH_MOSI", "6": "FLASH_SCK",
                   "7": "+3V3", "8": "+3V3"}, (-10.5, 9.0, 0.0), "soic8"))
    for ref, net, x in (("R3", "BARO_SCL", 12.5), ("R4", "BARO_SDA", 14.0)):
        p.append(Part(ref, "Sensors", "4.7k", "Resistor_SMD:R_0402_1005Metric", "RC0402FR-074K7L", "YAGEO",
                      "I²C pull-ups of the barometer bus", two("1", "2"), {"1": "+3V3", "2": net}, (x, -9.0, 90.0), "0402"))
    for ref, x, y in (("C12", -4.5, -9.0), ("C13", 7.0, -9.0), ("C14", -10.5, 13.0)):
        p.append(Part(ref, "Sensors", "100nF", "Capacitor_SMD:C_0402_1005Metric", "GRM155R71H104KE14D", "Murata",
                      "100 nF decoupling capacitors at every IC supply pin", two("1", "2"),
                      {"1": "+3V3", "2": "GND"}, (x, y, 90.0), "0402"))
    # power
    ldo = [("1", "VIN", "power_in"), ("2", "GND", "power_in"), ("3", "EN", "input"), ("4", "NC", "no_connect"),
           ("5", "VOUT", "power_out")]
    p.append(Part("U4", "Power", "AP2112K-3.3", "Package_TO_SOT_SMD:SOT-23-5", "AP2112K-3.3TRG1",
                  "Diodes Incorporated", "3.3 V low-dropout linear regulator powering the logic rail (MCU, IMU, baro, flash)",
                  ldo, {"1": "+5V", "2": "GND", "3": "+5V", "5": "+3V3"}, (10.0, 6.0, 0.0), "sot23-5"))
    buck = [("1", "GND", "power_in"), ("2", "SW", "power_out"), ("3", "VIN", "power_in"), ("4", "VFB", "input"),
            ("5", "EN", "input"), ("6", "VBST", "passive")]
    p.append(Part("U5", "Power", "TPS563201", "Package_TO_SOT_SMD:SOT-23-6", "TPS563201DDCR", "Texas Instruments",
                  "5 V synchronous buck converter powering the peripherals (GPS, receiver)", buck,
                  {"1": "GND", "2": "SW", "3": "VBAT", "4": "FB_5V", "5": "VBAT", "6": "BST"}, (10.0, 12.5, 0.0),
                  "sot23-6"))
    p.append(Part("L1", "Power", "2.2uH", "Inductor_SMD:L_1210_3225Metric", "LQH32PZ2R2NN0L", "Murata",
                  "the buck converter's 2.2 µH inductor", two("1", "2"), {"1": "SW", "2": "+5V"}, (4.5, 12.5, 90.0),
                  "1210"))
    caps10 = (("C1", "VBAT", 14.5, 12.5), ("C2", "VBAT", 14.5, 10.0), ("C3", "+5V", 1.5, 12.5),
              ("C4", "+5V", 1.5, 10.0), ("C5", "+5V", 14.0, 6.0), ("C6", "+3V3", 14.0, 3.5))
    for ref, net, x, y in caps10:
        p.append(Part(ref, "Power", "10uF", "Capacitor_SMD:C_0603_1608Metric", "GRM188R61A106KE69D", "Murata",
                      "bulk decoupling capacitors at the regulator inputs", two("1", "2"), {"1": net, "2": "GND"},
                      (x, y, 90.0), "0603"))
    p.append(Part("R1", "Power", "10k", "Resistor_SMD:R_0402_1005Metric", "RC0402FR-0710KL", "YAGEO",
                  "pull-downs: BOOT0, and the battery divider's low side", two("1", "2"), {"1": "VBAT_SENSE", "2": "GND"},
                  (-4.0, 12.5, 90.0), "0402"))
    p.append(Part("R2", "Power", "100k", "Resistor_SMD:R_0402_1005Metric", "RC0402FR-07100KL", "YAGEO",
                  "battery divider, high side (VBAT_SENSE = VBAT / 11)", two("1", "2"), {"1": "VBAT", "2": "VBAT_SENSE"},
                  (-2.5, 12.5, 90.0), "0402"))
    # connectors
    p.append(Part("J1", "Connectors", "XT30 battery", "Connector_AMASS:AMASS_XT30PW-M_1x02_P2.50mm_Horizontal",
                  "XT30PW-M", "AMASS", "battery input: XT30 plug to the 3S pack", [("1", "+", "power_in"), ("2", "-", "power_in")],
                  {"1": "VBAT", "2": "GND"}, (0.0, 15.5, 180.0), "xt30"))
    sh8 = [(str(i), n, "passive") for i, n in enumerate(("VBAT", "GND", "CURR", "TLM", "M1", "M2", "M3", "M4"), 1)]
    p.append(Part("J2", "Connectors", "ESC 8-pin", "Connector_JST:JST_SH_SM08B-SRSS-TB_1x08-1MP_P1.00mm_Horizontal",
                  "SM08B-SRSS-TB(LF)(SN)", "JST", "4-in-1 ESC harness: battery sense, telemetry, four motor signals",
                  sh8, {"1": "VBAT", "2": "GND", "5": "MOTOR1", "6": "MOTOR2", "7": "MOTOR3", "8": "MOTOR4"},
                  (0.0, -15.5, 0.0), "jst-sh-8"))
    gh6 = [(str(i), n, "passive") for i, n in enumerate(("5V", "TX", "RX", "SDA", "SCL", "GND"), 1)]
    p.append(Part("J3", "Connectors", "GPS 6-pin", "Connector_JST:JST_GH_SM06B-GHS-TB_1x06-1MP_P1.25mm_Horizontal",
                  "SM06B-GHS-TB(LF)(SN)", "JST", "GPS and compass module port", gh6,
                  {"1": "+5V", "2": "GPS_TX", "3": "GPS_RX", "6": "GND"}, (-15.5, 0.0, 90.0), "jst-gh-6"))
    sh4 = [(str(i), n, "passive") for i, n in enumerate(("5V", "TX", "RX", "GND"), 1)]
    p.append(Part("J4", "Connectors", "RC receiver 4-pin", "Connector_JST:JST_SH_SM04B-SRSS-TB_1x04-1MP_P1.00mm_Horizontal",
                  "SM04B-SRSS-TB(LF)(SN)", "JST", "radio receiver port (CRSF)", sh4,
                  {"1": "+5V", "2": "RC_TX", "3": "RC_RX", "4": "GND"}, (15.5, -2.0, 270.0), "jst-sh-4"))
    swd = [(str(i), n, "passive") for i, n in enumerate(("3V3", "SWDIO", "SWCLK", "GND"), 1)]
    p.append(Part("J5", "Connectors", "SWD 4-pin", "Connector_JST:JST_SH_SM04B-SRSS-TB_1x04-1MP_P1.00mm_Horizontal",
                  "SM04B-SRSS-TB(LF)(SN)", "JST", "debug port (SWD)", swd,
                  {"1": "+3V3", "2": "SWDIO", "3": "SWCLK", "4": "GND"}, (-15.5, -9.0, 90.0), "jst-sh-4"))
    # off the board: in the schematic and the BOM, not on the board (KiCad's "exclude from board")
    p.append(Part("BT1", "", "3S LiPo 2200mAh", "", "TA-45C-2200-3S1P", "Tattu (Grepow)", "3S LiPo flight battery pack",
                  [("1", "+", "power_out"), ("2", "-", "power_out")]))
    p.append(Part("ESC1", "", "4-in-1 ESC 50A", "", "Tekko32 F4 4in1 50A", "Holybro",
                  "4-in-1 electronic speed controller driving the four motors", [(str(i), n, "passive") for i, n in
                                                                                  enumerate(("VBAT", "GND", "M1", "M2", "M3", "M4"), 1)]))
    for i in range(1, 5):
        p.append(Part(f"M{i}", "", "2306 2450KV motor", "", "F60PROV 2450KV", "T-Motor",
                      "brushless motors, 2306 size, 2450 KV", [("1", "A", "passive"), ("2", "B", "passive"), ("3", "C", "passive")]))
    p.append(Part("GPS1", "", "M10 GPS + compass", "", "M10Q-250", "Foxeer",
                  "GPS receiver module with magnetometer (compass)", gh6))
    p.append(Part("RX1", "", "ELRS 2.4 GHz receiver", "", "RP1 V2", "RadioMaster", "ExpressLRS 2.4 GHz radio control receiver", sh4))
    return p


SHEETS = [("MCU", "sheets/mcu.kicad_sch"), ("Sensors", "sheets/sensors.kicad_sch"),
          ("Power", "sheets/power.kicad_sch"), ("Connectors", "sheets/connectors.kicad_sch")]


# ---- s-expressions, written as KiCad 9 writes them (tabs, one item per line) ------------------------

def q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def n(x: float) -> str:
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class W:
    """Writes nested s-expressions with KiCad's indentation."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def open(self, head: str) -> W:
        self.lines.append("\t" * self.depth + "(" + head)
        self.depth += 1
        return self

    def close(self) -> W:
        self.depth -= 1
        self.lines.append("\t" * self.depth + ")")
        return self

    def item(self, text: str) -> W:
        self.lines.append("\t" * self.depth + "(" + text + ")")
        return self

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def effects(w: W, size: float = 1.27, hide: bool = False, justify: str | None = None) -> None:
    w.open("effects").open("font").item(f"size {n(size)} {n(size)}").close()
    if justify:
        w.item(f"justify {justify}")
    if hide:
        w.item("hide yes")
    w.close()


def sch_property(w: W, name: str, value: str, x: float, y: float, hide: bool = False, angle: float = 0) -> None:
    w.open(f"property {q(name)} {q(value)}").item(f"at {n(x)} {n(y)} {n(angle)}")
    effects(w, hide=hide)
    w.close()


def stroke(w: W, width: float = 0, kind: str = "default") -> None:
    w.open("stroke").item(f"width {n(width)}").item(f"type {kind}").close()


# ---- schematic symbols: a box with pins left and right, or a two-pin part ---------------------------

def symbol_geometry(part: Part) -> list[tuple[str, str, str, float, float, float]]:
    """(number, name, type, x, y, angle) of each pin's end, in the symbol's frame (y up)."""
    pins = part.pins
    if len(pins) == 2 and part.ref[0] in "CRL":
        return [(pins[0][0], pins[0][1], pins[0][2], 0, 3.81, 270), (pins[1][0], pins[1][1], pins[1][2], 0, -3.81, 90)]
    half = math.ceil(len(pins) / 2)
    height = 2.54 * half
    out = []
    for i, (num, name, kind) in enumerate(pins):
        left = i < half
        row = i if left else i - half
        y = height / 2 - 1.27 - 2.54 * row
        y = round(y / 1.27) * 1.27
        out.append((num, name, kind, -12.7 if left else 12.7, y, 0 if left else 180))
    return out


def lib_symbol(w: W, part: Part, lib_id: str) -> None:
    name = lib_id.split(":", 1)[1]
    geo = symbol_geometry(part)
    two_pin = len(geo) == 2 and geo[0][3] == 0
    w.open(f"symbol {q(lib_id)}")
    if two_pin:
        w.open("pin_numbers").item("hide yes").close()
        w.open("pin_names").item("offset 0.254").item("hide yes").close()
    else:
        w.open("pin_names").item("offset 1.016").close()
    w.item("exclude_from_sim no").item(f"in_bom yes").item(f"on_board {'yes' if part.on_board else 'no'}")
    top = max(p[4] for p in geo) + 2.54
    sch_property(w, "Reference", part.ref.rstrip("0123456789"), 0, top + 1.27)
    sch_property(w, "Value", name, 0, -top - 1.27)
    sch_property(w, "Footprint", "", 0, 0, hide=True)
    sch_property(w, "Datasheet", "", 0, 0, hide=True)
    sch_property(w, "Description", part.description, 0, 0, hide=True)
    w.open(f"symbol {q(name + '_0_1')}")
    if two_pin:
        w.open("rectangle").item("start -1.016 2.54").item("end 1.016 -2.54")
    else:
        w.open("rectangle").item(f"start -10.16 {n(top - 1.27)}").item(f"end 10.16 {n(-top + 1.27)}")
    stroke(w, 0.254)
    w.open("fill").item("type background").close()
    w.close().close()
    w.open(f"symbol {q(name + '_1_1')}")
    for num, pin_name, kind, x, y, angle in geo:
        w.open(f"pin {kind} line").item(f"at {n(x)} {n(y)} {n(angle)}").item("length 2.54")
        w.open(f"name {q(pin_name)}")
        effects(w)
        w.close()
        w.open(f"number {q(num)}")
        effects(w)
        w.close().close()
    w.close()
    w.item("embedded_fonts no")
    w.close()


def lib_id_of(part: Part) -> str:
    if part.ref[0] in "CRL" and len(part.pins) == 2 and part.on_board:
        return {"C": "Device:C", "R": "Device:R", "L": "Device:L"}[part.ref[0]]
    return f"flight-controller:{part.value.replace(' ', '_')}" if not part.mpn else \
        f"flight-controller:{part.mpn.replace(' ', '_').replace('(', '').replace(')', '')}"


def placed_symbol(w: W, part: Part, at: tuple[float, float], path: str, sheet_uuid: str) -> None:
    x, y = at
    w.open("symbol").item(f"lib_id {q(lib_id_of(part))}").item(f"at {n(x)} {n(y)} 0").item("unit 1")
    w.item("exclude_from_sim no").item("in_bom yes").item(f"on_board {'yes' if part.on_board else 'no'}").item("dnp no")
    w.item(f"uuid {q(uid('symbol', part.ref))}")
    geo = symbol_geometry(part)
    top = max(p[4] for p in geo) + 2.54
    sch_property(w, "Reference", part.ref, x, y - top - 1.27)
    sch_property(w, "Value", part.value, x, y + top + 1.27)
    sch_property(w, "Footprint", part.footprint, x, y, hide=True)
    sch_property(w, "Datasheet", "", x, y, hide=True)
    sch_property(w, "Description", part.description, x, y, hide=True)
    sch_property(w, "MPN", part.mpn, x, y, hide=True)
    sch_property(w, "Manufacturer", part.manufacturer, x, y, hide=True)
    for num, *_ in geo:
        w.open(f"pin {q(num)}").item(f"uuid {q(uid('pin', part.ref, num))}").close()
    w.open("instances").open(f"project {q(PROJECT)}").open(f"path {q(path)}")
    w.item(f"reference {q(part.ref)}").item("unit 1").close().close().close()
    w.close()


def labels(w: W, part: Part, at: tuple[float, float]) -> None:
    """A global label on the end of every connected pin: that is the pin's net."""
    x0, y0 = at
    for num, _, _, x, y, angle in symbol_geometry(part):
        net = part.nets.get(num)
        if not net:
            continue
        px, py = x0 + x, y0 - y
        spin = {0: 180, 180: 0, 90: 270, 270: 90}[int(angle)]
        w.open(f"global_label {q(net)}").item("shape passive").item(f"at {n(px)} {n(py)} {spin}")
        w.item("fields_autoplaced yes")
        effects(w, justify="right" if spin == 180 else "left")
        w.item(f"uuid {q(uid('label', part.ref, num))}")
        w.close()


def schematic(title: str, sheet_uuid: str, members: list[Part], path: str, sheets: list | None = None,
              page: str = "1") -> str:
    w = W()
    w.open("kicad_sch").item("version 20250114").item('generator "eeschema"').item('generator_version "9.0"')
    w.item(f"uuid {q(sheet_uuid)}").item('paper "A4"')
    w.open("title_block").item(f"title {q(title)}").item('date "2026-03-01"').item('rev "2.1"')
    w.item('company "hardware-team"').close()
    w.open("lib_symbols")
    done = set()
    for part in sorted(members, key=lib_id_of):
        lib = lib_id_of(part)
        if lib not in done:
            done.add(lib)
            lib_symbol(w, part, lib)
    w.close()
    for i, part in enumerate(members):
        at = (50.8 + 76.2 * (i % 3), 50.8 + 50.8 * (i // 3))
        labels(w, part, at)
    for i, part in enumerate(members):
        at = (50.8 + 76.2 * (i % 3), 50.8 + 50.8 * (i // 3))
        placed_symbol(w, part, at, path, sheet_uuid)
    for i, (name, file) in enumerate(sheets or []):
        x, y = 30.48 + 60.96 * i, 170.18
        w.open("sheet").item(f"at {n(x)} {n(y)}").item("size 45.72 20.32").item("exclude_from_sim no")
        w.item("in_bom yes").item("on_board yes").item("dnp no").item("fields_autoplaced yes")
        stroke(w, 0.1524, "solid")
        w.open("fill").item("color 0 0 0 0.0000").close()
        w.item(f"uuid {q(uid('sheet', name))}")
        w.open(f"property \"Sheetname\" {q(name)}").item(f"at {n(x)} {n(y - 0.7116)} 0")
        effects(w, justify="left bottom")
        w.close()
        w.open(f"property \"Sheetfile\" {q(file)}").item(f"at {n(x)} {n(y + 20.9184)} 0")
        effects(w, justify="left top")
        w.close()
        w.open("instances").open(f"project {q(PROJECT)}").open(f"path {q('/' + sheet_uuid)}")
        w.item(f"page {q(str(i + 2))}").close().close().close()
        w.close()
    if sheets is not None:
        w.open("sheet_instances").open('path "/"').item(f"page {q(page)}").close().close()
    w.item("embedded_fonts no")
    w.close()
    return w.text()


# ---- the board ---------------------------------------------------------------------------------

PADS = {  # package → (pads as (number, x, y, w, h, shape, kind), courtyard half w/h, body half w/h, height)
}


def quad(count: int, pitch: float, span: float, pw: float, ph: float) -> list[tuple]:
    """A QFP's pads: `count` in four rows, counter-clockwise from pin 1 at the top of the left side."""
    per = count // 4
    out = []
    for i in range(count):
        side, k = divmod(i, per)
        offset = (k - (per - 1) / 2) * pitch
        if side == 0:
            out.append((str(i + 1), -span, offset, ph, pw))
        elif side == 1:
            out.append((str(i + 1), offset, span, pw, ph))
        elif side == 2:
            out.append((str(i + 1), span, -offset, ph, pw))
        else:
            out.append((str(i + 1), -offset, -span, pw, ph))
    return out


def dual(count: int, pitch: float, span: float, pw: float, ph: float) -> list[tuple]:
    per = count // 2
    out = []
    for i in range(count):
        side, k = divmod(i, per)
        offset = (k - (per - 1) / 2) * pitch
        out.append((str(i + 1), -span, offset, pw, ph) if side == 0 else (str(i + 1), span, -offset, pw, ph))
    return out


def perimeter(counts: tuple[int, int, int, int], pitch: float, sx: float, sy: float, pl: float, pw: float) -> list[tuple]:
    """An LGA's pads, counter-clockwise from the top of the left side: `counts` per side (left,
    bottom, right, top), long sides at x = ±sx, short ones at y = ±sy."""
    out, k = [], 1
    for side, count in enumerate(counts):
        for i in range(count):
            offset = (i - (count - 1) / 2) * pitch
            if side == 0:
                out.append((str(k), -sx, offset, pl, pw))
            elif side == 1:
                out.append((str(k), offset, sy, pw, pl))
            elif side == 2:
                out.append((str(k), sx, -offset, pl, pw))
            else:
                out.append((str(k), -offset, -sy, pw, pl))
            k += 1
    return out


def row(count: int, pitch: float, pw: float, ph: float, y: float = 0.0, mount: tuple | None = None) -> list[tuple]:
    out = [(str(i + 1), (i - (count - 1) / 2) * pitch, y, pw, ph) for i in range(count)]
    if mount:
        mx, my, mw, mh = mount
        out += [("MP", -mx, my, mw, mh), ("MP", mx, my, mw, mh)]
    return out


def package(name: str) -> tuple[list[tuple], tuple[float, float], tuple[float, float], str]:
    """(pads, courtyard half size, body half size, pad kind)."""
    if name == "qfp64":
        return quad(64, 0.5, 5.675, 0.3, 1.55), (6.7, 6.7), (5.0, 5.0), "smd"
    if name == "xtal3225":
        return [("1", -1.1, 0.85, 1.4, 1.2), ("2", 1.1, 0.85, 1.4, 1.2), ("3", 1.1, -0.85, 1.4, 1.2),
                ("4", -1.1, -0.85, 1.4, 1.2)], (2.1, 1.65), (1.6, 1.25), "smd"
    if name == "0402":
        return [("1", -0.485, 0, 0.59, 0.64), ("2", 0.485, 0, 0.59, 0.64)], (0.93, 0.47), (0.5, 0.25), "smd"
    if name == "0603":
        return [("1", -0.775, 0, 0.9, 0.95), ("2", 0.775, 0, 0.9, 0.95)], (1.48, 0.73), (0.8, 0.4), "smd"
    if name == "1210":
        return [("1", -1.4, 0, 1.25, 2.65), ("2", 1.4, 0, 1.25, 2.65)], (2.28, 1.6), (1.6, 1.25), "smd"
    if name == "lga14":   # 3 × 2.5 mm: 4 pads down each long side, 3 across each short one
        return perimeter((4, 3, 4, 3), 0.5, 1.2, 1.05, 0.6, 0.3), (2.0, 1.75), (1.5, 1.25), "smd"
    if name == "lga10":   # BMP388, 2 × 2 mm: pads as KiCad's Bosch_LGA-10 footprint places them
        at = [(0.25, -0.7625), (-0.25, -0.7625), (-0.7625, -0.5), (-0.7625, 0), (-0.7625, 0.5), (-0.25, 0.7625),
              (0.25, 0.7625), (0.7625, 0.5), (0.7625, 0), (0.7625, -0.5)]
        return [(str(i + 1), x, y, 0.25 if abs(x) < 0.5 else 0.275, 0.275 if abs(x) < 0.5 else 0.25)
                for i, (x, y) in enumerate(at)], (1.2, 1.2), (1.0, 1.0), "smd"
    if name == "soic8":
        return dual(8, 1.27, 3.6, 1.5, 0.6), (4.65, 3.0), (2.6, 2.6), "smd"
    if name == "sot23-5":
        return [("1", -1.1375, 0.95, 1.325, 0.6), ("2", -1.1375, 0, 1.325, 0.6), ("3", -1.1375, -0.95, 1.325, 0.6),
                ("4", 1.1375, -0.95, 1.325, 0.6), ("5", 1.1375, 0.95, 1.325, 0.6)], (2.05, 1.75), (0.8, 1.45), "smd"
    if name == "sot23-6":
        return [("1", -1.1375, 0.95, 1.325, 0.6), ("2", -1.1375, 0, 1.325, 0.6), ("3", -1.1375, -0.95, 1.325, 0.6),
                ("4", 1.1375, -0.95, 1.325, 0.6), ("5", 1.1375, 0, 1.325, 0.6), ("6", 1.1375, 0.95, 1.325, 0.6)], \
            (2.05, 1.75), (0.8, 1.45), "smd"
    if name == "xt30":
        return [("1", -2.5, 0, 2.5, 2.5), ("2", 2.5, 0, 2.5, 2.5)], (5.2, 3.3), (5.0, 3.0), "thru_hole"
    if name.startswith("jst-"):
        _, family, count = name.split("-")
        count = int(count)
        pitch = 1.0 if family == "sh" else 1.25
        mount = ((count - 1) * pitch / 2 + 1.3, 2.225, 1.2, 1.8) if family == "sh" else \
            ((count - 1) * pitch / 2 + 1.9, 2.5, 1.0, 2.8)
        half_w = mount[0] + 1.2
        return row(count, pitch, 0.6, 1.55, -1.3, mount), (half_w, 3.3), (half_w - 0.5, 2.25), "smd"
    raise ValueError(name)


def nets_of(all_parts: list[Part]) -> list[str]:
    names = sorted({net for p in all_parts if p.on_board for net in p.nets.values()})
    return [""] + names


def fp_rect(w: W, layer: str, hw: float, hh: float, width: float, tag: str) -> None:
    w.open("fp_rect").item(f"start {n(-hw)} {n(-hh)}").item(f"end {n(hw)} {n(hh)}")
    stroke(w, width, "solid")
    w.item("fill no").item(f"layer {q(layer)}").item(f"uuid {q(uid(tag, layer))}").close()


def fp_property(w: W, name: str, value: str, x: float, y: float, layer: str, hide: bool, tag: str) -> None:
    w.open(f"property {q(name)} {q(value)}").item(f"at {n(x)} {n(y)} 0")
    if name not in ("Reference", "Value"):
        w.item("unlocked yes")
    w.item(f"layer {q(layer)}")
    if hide:
        w.item("hide yes")
    w.item(f"uuid {q(uid(tag, 'property', name))}")
    w.open("effects").open("font").item("size 1 1" if name in ("Reference", "Value") else "size 1.27 1.27")
    w.item("thickness 0.15").close().close()
    w.close()


def footprint(w: W, part: Part, net_ids: dict[str, int], sheet_paths: dict[str, str]) -> None:
    lib, name = part.footprint.split(":", 1)
    pads, (cw, ch), (bw, bh), kind = package(part.package)
    x, y, rot = part.at
    tag = f"fp/{part.ref}"
    w.open(f"footprint {q(part.footprint)}").item('layer "F.Cu"').item(f"uuid {q(uid(tag))}")
    w.item(f"at {n(ORIGIN[0] + x)} {n(ORIGIN[1] + y)}" + (f" {n(rot)}" if rot else ""))
    w.item(f"descr {q(part.description)}").item(f"tags {q(name)}")
    fp_property(w, "Reference", part.ref, 0, -ch - 1.0, "F.SilkS", False, tag)
    fp_property(w, "Value", part.value, 0, ch + 1.0, "F.Fab", False, tag)
    fp_property(w, "Datasheet", "", 0, 0, "F.Fab", True, tag)
    fp_property(w, "Description", part.description, 0, 0, "F.Fab", True, tag)
    fp_property(w, "MPN", part.mpn, 0, 0, "F.Fab", True, tag)
    fp_property(w, "Manufacturer", part.manufacturer, 0, 0, "F.Fab", True, tag)
    sheet_name, sheet_file = next((s for s in SHEETS if s[0] == part.sheet), ("", f"{PROJECT}.kicad_sch"))
    w.item(f"path {q(sheet_paths[part.sheet] + '/' + uid('symbol', part.ref))}")
    w.item(f"sheetname {q('/' + sheet_name + '/' if sheet_name else '/')}").item(f"sheetfile {q(sheet_file)}")
    w.item("attr smd" if kind == "smd" else "attr through_hole")
    fp_rect(w, "F.CrtYd", cw, ch, 0.05, tag)
    fp_rect(w, "F.Fab", bw, bh, 0.1, tag)
    for i, (num, px, py, pw, ph) in enumerate(pads):
        net = part.nets.get(num, "")
        if kind == "thru_hole" and num != "MP":
            w.open(f"pad {q(num)} thru_hole rect" if num == "1" else f"pad {q(num)} thru_hole circle")
            w.item(f"at {n(px)} {n(py)}" + (f" {n(rot)}" if rot else "")).item(f"size {n(pw)} {n(ph)}")
            w.item("drill 1.3").item('layers "*.Cu" "*.Mask"').item("remove_unused_layers no")
        else:
            shape = "roundrect" if num != "MP" else "rect"
            w.open(f"pad {q(num)} smd {shape}")
            w.item(f"at {n(px)} {n(py)}" + (f" {n(rot)}" if rot else "")).item(f"size {n(pw)} {n(ph)}")
            w.item('layers "F.Cu" "F.Mask" "F.Paste"')
            if shape == "roundrect":
                w.item("roundrect_rratio 0.25")
        if net:
            w.item(f"net {net_ids[net]} {q(net)}")
        pin = next((p for p in part.pins if p[0] == num), None)
        if pin is not None:
            w.item(f"pinfunction {q(pin[1])}").item(f"pintype {q(pin[2])}")
        w.item(f"uuid {q(uid(tag, 'pad', str(i)))}")
        w.close()
    w.item("embedded_fonts no")
    w.open(f"model {q(f'{MODELS}/{lib}.3dshapes/{name}.step')}")
    w.open("offset").item("xyz 0 0 0").close().open("scale").item("xyz 1 1 1").close()
    w.open("rotate").item("xyz 0 0 0").close().close()
    w.close()


def mounting_hole(w: W, ref: str, x: float, y: float) -> None:
    tag = f"fp/{ref}"
    name = "MountingHole_3.2mm_M3"
    w.open(f"footprint {q('MountingHole:' + name)}").item('layer "F.Cu"').item(f"uuid {q(uid(tag))}")
    w.item(f"at {n(ORIGIN[0] + x)} {n(ORIGIN[1] + y)}")
    w.item('descr "Mounting Hole 3.2mm, no annular, M3"').item('tags "mounting hole 3.2mm no annular m3"')
    fp_property(w, "Reference", ref, 0, -4.2, "F.SilkS", True, tag)
    fp_property(w, "Value", name, 0, 4.2, "F.Fab", True, tag)
    fp_property(w, "Datasheet", "", 0, 0, "F.Fab", True, tag)
    fp_property(w, "Description", "", 0, 0, "F.Fab", True, tag)
    w.item("attr exclude_from_pos_files exclude_from_bom")
    w.open("fp_circle").item("center 0 0").item("end 3.45 0")
    stroke(w, 0.05, "solid")
    w.item("fill no").item('layer "F.CrtYd"').item(f"uuid {q(uid(tag, 'crtyd'))}").close()
    w.open('pad "" np_thru_hole circle').item("at 0 0").item("size 3.2 3.2").item("drill 3.2")
    w.item('layers "*.Cu" "*.Mask"').item(f"uuid {q(uid(tag, 'pad'))}").close()
    w.item("embedded_fonts no")
    w.close()


COPPER = ["F.Cu", "In1.Cu", "In2.Cu", "In3.Cu", "In4.Cu", "B.Cu"]
COPPER_IDS = [0, 4, 6, 8, 10, 2]   # KiCad 9 numbers copper layers F=0, B=2, inner 4, 6, ...


def board(all_parts: list[Part], sheet_paths: dict[str, str]) -> str:
    net_names = nets_of(all_parts)
    net_ids = {name: i for i, name in enumerate(net_names)}
    w = W()
    w.open("kicad_pcb").item("version 20241229").item('generator "pcbnew"').item('generator_version "9.0"')
    w.open("general").item("thickness 1.6").item("legacy_teardrops no").close()
    w.item('paper "A4"')
    w.open("title_block").item('title "DroneFlightController-v2.1"').item('date "2026-03-01"').item('rev "2.1"').close()
    w.open("layers")
    for lid, name in zip(COPPER_IDS, COPPER):
        w.item(f"{lid} {q(name)} {'signal' if name not in ('In1.Cu', 'In4.Cu') else 'power'}")
    for lid, name, kind, alias in ((9, "F.Adhes", "user", "F.Adhesive"), (11, "B.Adhes", "user", "B.Adhesive"),
                                   (13, "F.Paste", "user", None), (15, "B.Paste", "user", None),
                                   (5, "F.SilkS", "user", "F.Silkscreen"), (7, "B.SilkS", "user", "B.Silkscreen"),
                                   (1, "F.Mask", "user", None), (3, "B.Mask", "user", None),
                                   (17, "Dwgs.User", "user", "User.Drawings"), (19, "Cmts.User", "user", "User.Comments"),
                                   (25, "Edge.Cuts", "user", None), (27, "Margin", "user", None),
                                   (31, "F.CrtYd", "user", "F.Courtyard"), (29, "B.CrtYd", "user", "B.Courtyard"),
                                   (35, "F.Fab", "user", None), (33, "B.Fab", "user", None)):
        w.item(f"{lid} {q(name)} {kind}" + (f" {q(alias)}" if alias else ""))
    w.close()
    w.open("setup").open("stackup")
    w.open('layer "F.SilkS"').item('type "Top Silk Screen"').close()
    w.open('layer "F.Paste"').item('type "Top Solder Paste"').close()
    w.open('layer "F.Mask"').item('type "Top Solder Mask"').item("thickness 0.01").close()
    cores = ["core", "prepreg", "core", "prepreg", "core"]  # 6 × 35 µm copper, 2 masks, 5 × 0.274 mm: 1.6 mm
    for i, name in enumerate(COPPER):
        w.open(f"layer {q(name)}").item('type "copper"').item("thickness 0.035").close()
        if i < len(cores):
            w.open(f"layer {q(f'dielectric {i + 1}')}").item(f"type {q(cores[i])}").item("thickness 0.274")
            w.item('material "FR4"').item("epsilon_r 4.5").item("loss_tangent 0.02").close()
    w.open('layer "B.Mask"').item('type "Bottom Solder Mask"').item("thickness 0.01").close()
    w.open('layer "B.Paste"').item('type "Bottom Solder Paste"').close()
    w.open('layer "B.SilkS"').item('type "Bottom Silk Screen"').close()
    w.item('copper_finish "ENIG"').item("dielectric_constraints no").close()
    w.item("pad_to_mask_clearance 0").item("allow_soldermask_bridges_in_footprints no").item("tenting front back")
    w.close()
    for name, i in net_ids.items():
        w.item(f"net {i} {q(name)}")
    for part in all_parts:
        if part.on_board:
            footprint(w, part, net_ids, sheet_paths)
    h = HOLE_PITCH / 2
    for i, (x, y) in enumerate(((-h, -h), (h, -h), (-h, h), (h, h)), 1):
        mounting_hole(w, f"H{i}", x, y)
    # the outline: a 36 × 36 mm square with 3 mm corner radii, as lines and arcs on Edge.Cuts
    x0, y0 = ORIGIN[0] - BOARD_W / 2, ORIGIN[1] - BOARD_H / 2
    x1, y1, r = x0 + BOARD_W, y0 + BOARD_H, 3.0
    for k, (a, b) in enumerate((((x0 + r, y0), (x1 - r, y0)), ((x1, y0 + r), (x1, y1 - r)),
                                ((x1 - r, y1), (x0 + r, y1)), ((x0, y1 - r), (x0, y0 + r)))):
        w.open("gr_line").item(f"start {n(a[0])} {n(a[1])}").item(f"end {n(b[0])} {n(b[1])}")
        stroke(w, 0.05, "default")
        w.item('layer "Edge.Cuts"').item(f"uuid {q(uid('edge', str(k)))}").close()
    c = r * (1 - math.sqrt(0.5))
    for k, (s, m, e) in enumerate((((x0, y0 + r), (x0 + c, y0 + c), (x0 + r, y0)),
                                   ((x1 - r, y0), (x1 - c, y0 + c), (x1, y0 + r)),
                                   ((x1, y1 - r), (x1 - c, y1 - c), (x1 - r, y1)),
                                   ((x0 + r, y1), (x0 + c, y1 - c), (x0, y1 - r)))):
        w.open("gr_arc").item(f"start {n(s[0])} {n(s[1])}").item(f"mid {n(m[0])} {n(m[1])}").item(f"end {n(e[0])} {n(e[1])}")
        stroke(w, 0.05, "default")
        w.item('layer "Edge.Cuts"').item(f"uuid {q(uid('arc', str(k)))}").close()
    w.open('gr_text "DroneFlightController v2.1"').item(f"at {n(ORIGIN[0])} {n(ORIGIN[1] - 12.5)} 0")
    w.item('layer "F.SilkS"').item(f"uuid {q(uid('text'))}")
    w.open("effects").open("font").item("size 1 1").item("thickness 0.15").close().close().close()
    w.item("embedded_fonts no")
    w.close()
    return w.text()


# ---- the BOM, as `kicad-cli sch export bom` writes it ------------------------------------------------

def bom(all_parts: list[Part]) -> str:
    """kicad-cli sch export bom --fields 'Reference,Value,Footprint,${QUANTITY},MPN,Manufacturer'
    --labels 'Reference,Value,Footprint,Qty,MPN,Manufacturer' --group-by 'Value,Footprint,MPN'
    --ref-range-delimiter '-': every field quoted, grouped rows in reference order."""
    groups: dict[tuple, list[Part]] = {}
    for part in all_parts:
        groups.setdefault((part.value, part.footprint, part.mpn), []).append(part)
    rows = ['"Reference","Value","Footprint","Qty","MPN","Manufacturer"']

    def key(ref: str):
        letters = ref.rstrip("0123456789")
        return letters, int(ref[len(letters):])

    for members in sorted(groups.values(), key=lambda ps: key(min((p.ref for p in ps), key=key))):
        refs = sorted((p.ref for p in members), key=key)
        first = members[0]
        rows.append(",".join(q(c) for c in (ranges(refs, key), first.value, first.footprint, str(len(refs)),
                                              first.mpn, first.manufacturer)))
    return "\n".join(rows) + "\n"


def ranges(refs: list[str], key) -> str:
    out, i = [], 0
    while i < len(refs):
        j = i
        letters, start = key(refs[i])
        while j + 1 < len(refs) and key(refs[j + 1]) == (letters, key(refs[j])[1] + 1):
            j += 1
        out.append(refs[i] if j - i < 2 else f"{refs[i]}-{refs[j]}")
        if 0 < j - i < 2:
            out.extend(refs[i + 1:j + 1])
        i = j + 1
    return ",".join(out)


# ---- the project file --------------------------------------------------------------------------

def project_file(root_uuid: str) -> str:
    import json

    data = {"board": {"design_settings": {"defaults": {"board_outline_line_width": 0.05}}},
            "boards": [], "libraries": {"pinned_footprint_libs": [], "pinned_symbol_libs": []},
            "meta": {"filename": f"{PROJECT}.kicad_pro", "version": 3},
            "net_settings": {"classes": [{"name": "Default", "clearance": 0.15, "track_width": 0.15}], "meta": {"version": 4}},
            "sheets": [[root_uuid, "Root"]] + [[uid("sheet", name), name] for name, _ in SHEETS],
            "text_variables": {}}
    return json.dumps(data, indent=2) + "\n"


# ---- the enclosure ---------------------------------------------------------------------------------

def enclosure(path: Path) -> None:
    """A PA12 tray and lid around the board, with four M3 standoffs on the 30.5 mm pattern:
    an assembly of named parts written by OpenCascade's STEP writer, its time stamp fixed."""
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Cut
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox, BRepPrimAPI_MakeCylinder
    from OCP.gp import gp_Pnt, gp_Trsf, gp_Vec
    from OCP.Interface import Interface_Static
    from OCP.STEPCAFControl import STEPCAFControl_Writer
    from OCP.STEPControl import STEPControl_AsIs
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDataStd import TDataStd_Name
    from OCP.TDocStd import TDocStd_Document
    from OCP.TopLoc import TopLoc_Location
    from OCP.XCAFApp import XCAFApp_Application
    from OCP.XCAFDoc import XCAFDoc_DocumentTool

    outer, wall, height = 42.0, 2.0, 12.0
    tray = BRepPrimAPI_MakeBox(gp_Pnt(-outer / 2, -outer / 2, 0), outer, outer, height).Shape()
    cavity = BRepPrimAPI_MakeBox(gp_Pnt(-outer / 2 + wall, -outer / 2 + wall, wall), outer - 2 * wall,
                                 outer - 2 * wall, height).Shape()
    tray = BRepAlgoAPI_Cut(tray, cavity).Shape()
    port = BRepPrimAPI_MakeBox(gp_Pnt(-6.0, -outer / 2 - 1, 5.0), 12.0, wall + 2, 4.0).Shape()  # the ESC harness
    tray = BRepAlgoAPI_Cut(tray, port).Shape()
    lid = BRepPrimAPI_MakeBox(gp_Pnt(-outer / 2, -outer / 2, 0), outer, outer, 1.6).Shape()
    standoff = BRepAlgoAPI_Cut(BRepPrimAPI_MakeCylinder(2.5, 5.0).Shape(), BRepPrimAPI_MakeCylinder(1.6, 5.0).Shape()).Shape()

    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    XCAFApp_Application.GetApplication_s().InitDocument(doc)
    shapes = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())

    def named(label, name):
        TDataStd_Name.Set_s(label, TCollection_ExtendedString(name))
        return label

    top = named(shapes.NewShape(), "enclosure")

    def place(child, at, name=None):
        move = gp_Trsf()
        move.SetTranslation(gp_Vec(*at))
        comp = shapes.AddComponent(top, child, TopLoc_Location(move))
        if name:
            named(comp, name)

    place(named(shapes.AddShape(tray, False), "tray"), (0, 0, 0))
    place(named(shapes.AddShape(lid, False), "lid"), (0, 0, height))
    post = named(shapes.AddShape(standoff, False), "standoff")
    h = HOLE_PITCH / 2
    for i, (x, y) in enumerate(((-h, -h), (h, -h), (-h, h), (h, h)), 1):
        place(post, (x, y, wall), f"standoff {i}")
    shapes.UpdateAssemblies()
    Interface_Static.SetCVal_s("write.step.unit", "MM")
    Interface_Static.SetCVal_s("write.step.product.name", "enclosure")
    writer = STEPCAFControl_Writer()
    writer.SetNameMode(True)
    from metaforge.adapters.step_read import captured_stdout  # OCCT prints its statistics to stdout

    with tempfile.TemporaryDirectory() as tmp, captured_stdout():
        out = Path(tmp) / "enclosure.step"
        if not writer.Transfer(doc, STEPControl_AsIs) or writer.Write(str(out)).name != "IFSelect_RetDone":
            raise RuntimeError("OpenCascade could not write the enclosure")
        text = out.read_text()
    path.write_bytes(fix_step_header(text).encode())


def fix_step_header(text: str) -> str:
    """The FILE_NAME of the header carries the time of writing: fixed, so the bytes are the same each time."""
    import re

    return re.sub(r"FILE_NAME\('([^']*)','[^']*'", "FILE_NAME('enclosure.step','2026-03-01T00:00:00'", text, count=1)


# ---- writing it all ------------------------------------------------------------------------------

def files() -> dict[str, bytes]:
    all_parts = parts()
    root_uuid = uid("root")
    sheet_paths = {"": ""} | {name: "/" + uid("sheet", name) for name, _ in SHEETS}
    out: dict[str, bytes] = {}
    root_parts = [p for p in all_parts if p.sheet == ""]
    out[f"kicad/{PROJECT}.kicad_sch"] = schematic("DroneFlightController-v2.1", root_uuid, root_parts, "/" + root_uuid,
                                              sheets=SHEETS).encode()
    for name, file in SHEETS:
        members = [p for p in all_parts if p.sheet == name]
        out[f"kicad/{file}"] = schematic(f"DroneFlightController-v2.1: {name}", uid("file", name), members,
                                      f"/{root_uuid}{sheet_paths[name]}").encode()
    out[f"kicad/{PROJECT}.kicad_pcb"] = board(all_parts, sheet_paths).encode()
    out[f"kicad/{PROJECT}.kicad_pro"] = project_file(root_uuid).encode()
    out[f"kicad/{PROJECT}-bom.csv"] = bom(all_parts).encode()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    ap.add_argument("--out", type=Path, default=OUT, help="where (default: the template's files/)")
    args = ap.parse_args()
    made = files()
    with tempfile.TemporaryDirectory() as tmp:
        step = Path(tmp) / "enclosure.step"
        enclosure(step)
        made["mech/enclosure.step"] = step.read_bytes()
    changed = [rel for rel, data in made.items()
               if not (args.out / rel).is_file() or (args.out / rel).read_bytes() != data]
    if args.check:
        for rel in changed:
            print(f"would change: {rel}")
        return 1 if changed else 0
    for rel in changed:
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(made[rel])
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
