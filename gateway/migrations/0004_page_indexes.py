from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_roster_upload')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Delivery',
            index=Index(fields=['message_id']),
        ),
        ops.AddIndex(
            model_name='Membership',
            index=Index(fields=['user_id']),
        ),
        ops.AddIndex(
            model_name='Participant',
            index=Index(fields=['user_id']),
        ),
    ]
