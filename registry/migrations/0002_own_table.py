# The registry's own table name and constraint name, once predictions no longer claims the model.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0001_initial"),
        ("predictions", "0004_modelversion_moves_to_registry"),
    ]

    operations = [
        migrations.AlterModelTable(name="modelversion", table=None),
        migrations.RemoveConstraint(model_name="modelversion", name="predictions_one_active_model"),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.UniqueConstraint(condition=models.Q(("status", "active")), fields=("status",), name="registry_one_active_model"),
        ),
    ]
