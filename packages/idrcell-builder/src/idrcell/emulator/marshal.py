"""JSON in the shapes IDR answers: omero-marshal objects, webgateway imgData, webclient annotations.

Shapes follow the OMERO JSON API documentation (omero-documentation, developers/json-api.rst) and
answers the real IDR gave (docs/idr-api.md). Fields whose value is null are omitted from
omero-marshal objects, as the JSON API does.
"""

from __future__ import annotations

import math
from typing import Any

from idrcell.emulator.catalogue import Catalogue, Container, Dataset, Image, Plate, Well

OME = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
PUBLIC_USER_ID = 52  # IDR's "public" experimenter; any fixed id will do for a client
PUBLIC_GROUP_ID = 3


def _permissions(perm: str = "r-----") -> dict[str, Any]:
    return {
        "@type": "TBD#Permissions",
        "perm": perm,
        "canAnnotate": False,
        "canDelete": False,
        "canEdit": False,
        "canLink": False,
        "isGroupAnnotate": False,
        "isGroupRead": False,
        "isGroupWrite": False,
        "isUserRead": True,
        "isUserWrite": True,
        "isWorldRead": False,
        "isWorldWrite": False,
    }


def details() -> dict[str, Any]:
    """`omero:details` of objects owned by IDR's public data owner in the public group."""
    return {
        "@type": "TBD#Details",
        "owner": {
            "@id": PUBLIC_USER_ID,
            "@type": f"{OME}#Experimenter",
            "FirstName": "Public",
            "LastName": "data",
            "UserName": "public",
            "omero:details": {"@type": "TBD#Details", "permissions": _permissions()},
        },
        "group": {
            "@id": PUBLIC_GROUP_ID,
            "@type": f"{OME}#ExperimenterGroup",
            "Name": "public",
            "omero:details": {"@type": "TBD#Details", "permissions": _permissions("rwr---")},
        },
        "permissions": _permissions(),
    }


def drop_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if item is not None}


def _length(value: float | None, unit: str = "MICROMETER", symbol: str = "µm") -> dict[str, Any] | None:
    if value is None:
        return None
    return {"@type": "TBD#LengthI", "Unit": unit, "Symbol": symbol, "Value": value}


def container(base: str, item: Container, child_count: int) -> dict[str, Any]:
    """A Screen or Project."""
    api = f"{base}/api/v0/m"
    if item.kind == "screen":
        links = {"url:screen": f"{api}/screens/{item.id}/", "url:plates": f"{api}/screens/{item.id}/plates/"}
    else:
        links = {
            "url:project": f"{api}/projects/{item.id}/",
            "url:datasets": f"{api}/projects/{item.id}/datasets/",
        }
    return drop_nulls(
        {
            "@id": item.id,
            "@type": f"{OME}#{'Screen' if item.kind == 'screen' else 'Project'}",
            "Name": item.name,
            "Description": item.description or None,
            "omero:details": details(),
            "omero:childCount": child_count,
            **links,
        }
    )


def plate(base: str, item: Plate) -> dict[str, Any]:
    api = f"{base}/api/v0/m"
    return {
        "@id": item.id,
        "@type": f"{OME}#Plate",
        "Name": item.name,
        "Rows": item.rows,
        "Columns": item.columns,
        "RowNamingConvention": "letter",
        "ColumnNamingConvention": "number",
        "omero:details": details(),
        "url:plate": f"{api}/plates/{item.id}/",
        "url:plateacquisitions": f"{api}/plates/{item.id}/plateacquisitions/",
        "url:wells": f"{api}/plates/{item.id}/wells/",
    }


def _image_stub(base: str, image: Image) -> dict[str, Any]:
    """An Image as nested in a WellSample: no Pixels (the API loads none for wells)."""
    return {
        "@id": image.id,
        "@type": f"{OME}#Image",
        "Name": image.name,
        "AcquisitionDate": image.acquisition_ms,
        "omero:series": image.series,
        "omero:details": details(),
        "url:image": f"{base}/api/v0/m/images/{image.id}/",
    }


def well(base: str, catalogue: Catalogue, item: Well) -> dict[str, Any]:
    samples = []
    for sample in item.samples:
        entry: dict[str, Any] = {
            "@id": sample.id,
            "@type": f"{OME}#WellSample",
            "omero:details": details(),
            "Image": _image_stub(base, catalogue.images[sample.image_id]),
        }
        if sample.plate_acquisition_id is not None:
            entry["PlateAcquisition"] = {
                "@id": sample.plate_acquisition_id,
                "@type": f"{OME}#PlateAcquisition",
                "omero:details": details(),
            }
        samples.append(entry)
    return {
        "@id": item.id,
        "@type": f"{OME}#Well",
        "Column": item.column,
        "Row": item.row,
        "omero:details": details(),
        "url:well": f"{base}/api/v0/m/wells/{item.id}/",
        "WellSamples": samples,
    }


def dataset(base: str, item: Dataset) -> dict[str, Any]:
    api = f"{base}/api/v0/m"
    return {
        "@id": item.id,
        "@type": f"{OME}#Dataset",
        "Name": item.name,
        "omero:details": details(),
        "omero:childCount": len(item.image_ids),
        "url:dataset": f"{api}/datasets/{item.id}/",
        "url:images": f"{api}/datasets/{item.id}/images/",
        "url:projects": f"{api}/datasets/{item.id}/projects/",
    }


def _significant_bits(pixels_type: str) -> int:
    return {"uint8": 8, "uint16": 16, "float": 32}[pixels_type]


def image(base: str, item: Image, with_channels: bool) -> dict[str, Any]:
    """An Image with Pixels; Channels only when a single image is asked for (as the JSON API does)."""
    pixels: dict[str, Any] = drop_nulls(
        {
            "@id": item.pixels_id,
            "@type": f"{OME}#Pixels",
            "SizeX": item.width,
            "SizeY": item.height,
            "SizeZ": item.size_z,
            "SizeC": item.size_c,
            "SizeT": item.size_t,
            "PhysicalSizeX": _length(item.pixel_size_um),
            "PhysicalSizeY": _length(item.pixel_size_um),
            "Type": {
                "@type": "TBD#PixelsType",
                "value": item.pixels_type,
                "omero:details": {"@type": "TBD#Details"},
            },
            "DimensionOrder": {"@type": "TBD#DimensionOrder", "value": "XYZCT"},
            "SignificantBits": _significant_bits(item.pixels_type),
            "omero:details": details(),
        }
    )
    if with_channels:
        pixels["Channels"] = [
            drop_nulls(
                {
                    "@id": item.pixels_id * 100 + index,
                    "@type": f"{OME}#Channel",
                    "Name": channel.label,
                    "Color": _signed_rgba(channel.color),
                    "EmissionWavelength": _length(channel.emission_wave, "NANOMETER", "nm"),
                    "SamplesPerPixel": 1,
                    "omero:details": {"@type": "TBD#Details"},
                }
            )
            for index, channel in enumerate(item.channels)
        ]
    return {
        "@id": item.id,
        "@type": f"{OME}#Image",
        "Name": item.name,
        "AcquisitionDate": item.acquisition_ms,
        "omero:series": item.series,
        "omero:details": details(),
        "url:image": f"{base}/api/v0/m/images/{item.id}/",
        "Pixels": pixels,
    }


def _signed_rgba(color: str) -> int:
    """OMERO stores colours as a signed 32-bit RGBA integer."""
    value = (int(color, 16) << 8) | 0xFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _split_channel(width: int, height: int, count: int, border: int = 2) -> dict[str, Any]:
    """webgateway's split-channel grid: ceil-ish sqrt layout, as in OMERO.web's splitChannelInfo."""
    x = math.sqrt(count)
    y = round(x)
    x = y + 1 if x > y else y
    return {
        "width": width * x + border * (x + 1),
        "height": height * y + border * (y + 1),
        "border": border,
        "gridx": x,
        "gridy": y,
    }


def _pixel_range(pixels_type: str) -> list[float]:
    return {"uint8": [0, 255], "uint16": [0, 65535], "float": [-2147483648, 2147483647]}[pixels_type]


def img_data(catalogue: Catalogue, item: Image) -> dict[str, Any]:
    """`/webgateway/imgData/{id}/`, shaped like the real answer for IDR image 122770."""
    dataset_item = catalogue.datasets.get(item.dataset_id) if item.dataset_id is not None else None
    project = next((p for p in catalogue.projects if p.id == item.project_id), None)
    big = max(item.width, item.height) > catalogue.plane_limit
    answer: dict[str, Any] = {
        "id": item.id,
        "meta": {
            "imageName": item.name,
            "imageDescription": "",
            "imageAuthor": "Public data",
            "projectName": project.name if project else "Multiple",
            "projectId": project.id if project else None,
            "projectDescription": project.description if project else "",
            "datasetName": dataset_item.name if dataset_item else "Multiple",
            "datasetId": dataset_item.id if dataset_item else None,
            "datasetDescription": "",
            "wellSampleId": "",
            "wellId": item.well_id if item.well_id is not None else "",
            "imageTimestamp": item.acquisition_ms / 1000.0,
            "imageId": item.id,
            "pixelsType": item.pixels_type,
        },
        "perms": {"canAnnotate": False, "canEdit": False, "canDelete": False, "canLink": False},
        "tiles": big,
        "interpolate": True,
        "size": {
            "width": item.width,
            "height": item.height,
            "z": item.size_z,
            "t": item.size_t,
            "c": item.size_c,
        },
        "pixel_size": {"x": item.pixel_size_um, "y": item.pixel_size_um, "z": None},
        "init_zoom": 0,
        "pixel_range": _pixel_range(item.pixels_type),
        "channels": [
            {
                "emissionWave": channel.emission_wave,
                "label": channel.label,
                "color": channel.color,
                "inverted": False,
                "reverseIntensity": False,
                "family": "linear",
                "coefficient": 1.0,
                "window": {
                    "min": channel.window_min,
                    "max": channel.window_max,
                    "start": channel.window_start,
                    "end": channel.window_end,
                },
                "active": True,
            }
            for channel in item.channels
        ],
        "split_channel": {
            "g": _split_channel(item.width, item.height, item.size_c),
            "c": _split_channel(item.width, item.height, item.size_c + 1),
        },
        "rdefs": {
            "model": "greyscale" if item.size_c == 1 else "color",
            "projection": "normal",
            "defaultZ": item.default_z,
            "defaultT": item.default_t,
            "invertAxis": False,
        },
    }
    if big:
        # Pyramidal images advertise tiles; their full planes exceed the server's plane limit.
        answer["tile_size"] = {"width": 256, "height": 256}
        answer["levels"] = 1
    return answer


def annotations(item: Container) -> dict[str, Any]:
    """`/webclient/api/annotations/?type=map&screen|project=ID`: the study map annotation and one more.

    IDR links other map annotations to studies too; the second one (a client-side key-value pair,
    another namespace) makes clients pick the study annotation by its namespace.
    """
    parent = {"id": item.id, "class": "ScreenI" if item.kind == "screen" else "ProjectI", "name": item.name}
    owner = {"id": PUBLIC_USER_ID}
    perms = {"canAnnotate": False, "canDelete": False, "canEdit": False, "canLink": False}
    entries = [
        {
            "id": item.annotation_id,
            "ns": "idr.openmicroscopy.org/study/info",
            "description": None,
            "owner": owner,
            "date": "2016-05-26T00:00:00Z",
            "permissions": perms,
            "values": [[key, value] for key, value in item.annotations],
            "link": {
                "id": item.annotation_id + 1_000_000,
                "owner": owner,
                "parent": parent,
                "permissions": perms,
            },
            "class": "MapAnnotationI",
        },
        {
            "id": item.annotation_id + 2_000_000,
            "ns": "openmicroscopy.org/omero/client/mapAnnotation",
            "description": None,
            "owner": owner,
            "date": "2016-05-26T00:00:00Z",
            "permissions": perms,
            "values": [["Emulated", "yes"], ["Imaging Method", "not the study annotation"]],
            "link": {
                "id": item.annotation_id + 3_000_000,
                "owner": owner,
                "parent": parent,
                "permissions": perms,
            },
            "class": "MapAnnotationI",
        },
    ]
    return {
        "annotations": entries,
        "experimenters": [
            {"id": PUBLIC_USER_ID, "omeName": "public", "firstName": "Public", "lastName": "data"}
        ],
    }
