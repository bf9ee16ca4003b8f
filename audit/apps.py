from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import services
        from audit.detectors.exports import export_events_score
        from audit.detectors.inline import access_events_score
        from audit.detectors.runner import wake_on

        if access_events_score not in services.ACCESS_EVENT_SCORERS:
            services.ACCESS_EVENT_SCORERS.append(access_events_score)
        if export_events_score not in services.ACCESS_EVENT_SCORERS:
            services.ACCESS_EVENT_SCORERS.append(export_events_score)
        if wake_on not in services.SECURITY_EVENT_HOOKS:
            services.SECURITY_EVENT_HOOKS.append(wake_on)
