"""The simulated sites and their equipment: French sites, one overseas (another time zone)."""

from __future__ import annotations

from dataclasses import replace

from services.ingest.simulator.model import EquipmentKind, EquipmentSpec, SiteSpec

SITES: tuple[SiteSpec, ...] = (
    SiteSpec(
        code="LYON",
        name="Lyon Part-Dieu — siège régional",
        timezone="Europe/Paris",
        country_code="FR",
        latitude=45.760,
        longitude=4.859,
        capacity_kw=400.0,
        base_load_kw=240.0,
        profile="office",
        solar_share=0.5,  # 200 kWp on the roofs + a 200 kW gas cogeneration
        mean_temp_c=12.5,
        seasonal_amp_c=9.0,
        diurnal_amp_c=5.0,
    ),
    SiteSpec(
        code="MARSEILLE",
        name="Dépôt ferroviaire de Marseille-Blancarde",
        timezone="Europe/Paris",
        country_code="FR",
        latitude=43.296,
        longitude=5.404,
        capacity_kw=900.0,
        base_load_kw=520.0,
        profile="depot",
        solar_share=0.45,
        mean_temp_c=15.5,
        seasonal_amp_c=8.0,
        diurnal_amp_c=4.5,
        heating_per_c=0.02,
        cooling_per_c=0.03,
        cloudiness=-0.8,
    ),
    SiteSpec(
        code="REUNION",
        name="Station de pompage de Saint-Denis (La Réunion)",
        timezone="Indian/Reunion",
        country_code="RE",
        latitude=-20.882,
        longitude=55.451,
        capacity_kw=450.0,
        base_load_kw=180.0,
        profile="pumping",
        solar_share=1.0,  # PV only: production is zero at night
        mean_temp_c=24.5,
        seasonal_amp_c=2.5,
        diurnal_amp_c=3.5,
        heating_per_c=0.0,
        cooling_per_c=0.015,  # hot days draw more water
        cloudiness=-0.3,
    ),
    SiteSpec(
        code="LILLE",
        name="Usine de Lille-Lomme",
        timezone="Europe/Paris",
        country_code="FR",
        latitude=50.644,
        longitude=2.997,
        capacity_kw=900.0,
        base_load_kw=800.0,
        profile="industrial",
        solar_share=0.3,
        mean_temp_c=11.0,
        seasonal_amp_c=7.5,
        diurnal_amp_c=4.0,
        heating_per_c=0.015,
        cooling_per_c=0.02,
        cloudiness=0.5,
    ),
    SiteSpec(
        code="TOULOUSE",
        name="Toulouse Compans — bureaux",
        timezone="Europe/Paris",
        country_code="FR",
        latitude=43.611,
        longitude=1.434,
        capacity_kw=250.0,
        base_load_kw=150.0,
        profile="office",
        solar_share=1.0,
        mean_temp_c=14.0,
        seasonal_amp_c=8.5,
        diurnal_amp_c=5.5,
        cloudiness=-0.4,
    ),
    SiteSpec(
        code="FORT-DE-FRANCE",
        name="Dépôt de bus de Fort-de-France (Martinique)",
        timezone="America/Martinique",
        country_code="MQ",
        latitude=14.616,
        longitude=-61.059,
        capacity_kw=350.0,
        base_load_kw=260.0,
        profile="depot",
        solar_share=0.8,
        mean_temp_c=26.5,
        seasonal_amp_c=1.5,
        diurnal_amp_c=3.0,
        heating_per_c=0.0,
        cooling_per_c=0.03,
        cloudiness=-0.2,
    ),
)

# (suffix, name, kind) of the equipment each profile of site runs.
_EQUIPMENT: dict[str, tuple[tuple[str, str, EquipmentKind], ...]] = {
    "office": (
        ("PMP1", "Pompe eau glacée 1", "pump"),
        ("CMP1", "Compresseur groupe froid", "compressor"),
        ("TR1", "Transformateur TR1", "transformer"),
    ),
    "depot": (
        ("LOC1", "Locomotive BB 75001", "locomotive"),
        ("LOC2", "Locomotive BB 75002", "locomotive"),
        ("CMP1", "Compresseur d'air atelier", "compressor"),
        ("PMP1", "Pompe station de lavage", "pump"),
    ),
    "pumping": (
        ("PMP1", "Pompe d'exhaure 1", "pump"),
        ("PMP2", "Pompe d'exhaure 2", "pump"),
        ("PMP3", "Pompe de relevage", "pump"),
    ),
    "industrial": (
        ("CMP1", "Compresseur d'air 1", "compressor"),
        ("CMP2", "Compresseur d'air 2", "compressor"),
        ("PMP1", "Pompe de process", "pump"),
        ("TRB1", "Turbine de cogénération", "turbine"),
    ),
}


def site_specs(count: int) -> list[SiteSpec]:
    """The first ``count`` catalogue sites; past the catalogue, numbered copies (LYON-2…)."""
    specs = []
    for i in range(count):
        base = SITES[i % len(SITES)]
        round_ = i // len(SITES)
        if round_ == 0:
            specs.append(base)
        else:
            specs.append(
                replace(base, code=f"{base.code}-{round_ + 1}", name=f"{base.name} ({round_ + 1})")
            )
    return specs


def equipment_specs(sites: list[SiteSpec]) -> list[EquipmentSpec]:
    """The equipment of each site, coded ``<site>-<suffix>``."""
    return [
        EquipmentSpec(code=f"{site.code}-{suffix}", site=site.code, name=name, kind=kind)
        for site in sites
        for suffix, name, kind in _EQUIPMENT[site.profile]
    ]
